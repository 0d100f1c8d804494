"""Config loading, overrides and validation, and how the training CLI reports bad input."""

import dataclasses
import os
import subprocess

import pytest
import yaml

from tf_melgan.config import Config, ConfigError, config_from_dict, load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = os.path.join(ROOT, "configs", "base.yaml")
DEMO = os.path.join(ROOT, "configs", "demo.yaml")


def write(path, text):
    path.write_text(text)
    return str(path)


def config_error(*overrides, data=None) -> str:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data or {}, list(overrides))
    return str(info.value)


# ---------------------------------------------------------------- shipped configs


def test_base_yaml_is_the_paper_configuration():
    c = load_config(BASE)
    a, g, d, t = c.audio, c.generator, c.discriminator, c.training
    assert (a.sample_rate, a.n_fft, a.hop_length, a.win_length, a.n_mels) == (22050, 1024, 256,
                                                                              1024, 80)
    assert a.fmin == 0.0 and a.fmax is None
    assert g.ngf == 32 and g.ratios == [8, 8, 2, 2] and g.n_residual_layers == 3
    assert (d.ndf, d.n_layers, d.num_scales, d.downsampling) == (16, 4, 3, 4)
    assert c.loss.lambda_feat == 10.0
    for opt in (c.g_optimizer, c.d_optimizer):
        assert (opt.learning_rate, opt.beta_1, opt.beta_2) == (1e-4, 0.5, 0.9)
    assert t.batch_size == 16 and t.segment_length == 8192
    # Types survive YAML: ints stay ints, floats are floats.
    assert type(t.batch_size) is int and type(c.g_optimizer.learning_rate) is float
    assert type(a.fmin) is float


def test_base_yaml_only_restates_the_defaults():
    # The dataclass defaults are the paper's values too; base.yaml differs only in data.path.
    base, default = load_config(BASE).to_dict(), Config().to_dict()
    assert base["data"].pop("path") == "../shared/data/ljspeech-mini"
    default["data"].pop("path")
    assert base == default


def test_demo_yaml_loads_and_validates():
    # demo.yaml is tuned by hand, so check it against its own text rather than fixed numbers:
    # every key it sets is taken, every key it leaves out keeps the paper's value.
    with open(DEMO) as f:
        raw = yaml.safe_load(f)
    c = load_config(DEMO).to_dict()
    paper = Config().to_dict()
    for section, values in c.items():
        for key, value in values.items():
            expected = raw.get(section, {}).get(key, paper[section][key])
            assert value == expected, f"{section}.{key}"
    assert c["audio"] == paper["audio"] and c["generator"]["ratios"] == [8, 8, 2, 2]
    assert c["data"]["path"] == "demo_data"
    # It is a CPU-sized model: smaller than the paper's, never larger.
    for section, key in (("generator", "ngf"), ("discriminator", "ndf"),
                         ("training", "batch_size"), ("training", "steps")):
        assert c[section][key] < paper[section][key], f"{section}.{key}"


def test_no_path_gives_the_defaults():
    assert load_config(None) == Config()


def test_to_yaml_round_trips(tmp_path):
    c = load_config(DEMO, ["training.batch_size=4", "audio.fmax=8000"])
    assert load_config(write(tmp_path / "saved.yaml", c.to_yaml())) == c


# ---------------------------------------------------------------- overrides


def test_override_sets_an_int():
    c = load_config(BASE, ["training.batch_size=8"])
    assert c.training.batch_size == 8 and type(c.training.batch_size) is int
    assert load_config(BASE).training.batch_size == 16


def test_override_values_are_parsed_as_yaml():
    c = config_from_dict({}, ["generator.ratios=[4, 4, 4, 4]", "audio.hop_length=256",
                              "audio.fmax=8000", "training.jit_compile=true",
                              "g_optimizer.learning_rate=2e-4", "data.path=some/dir"])
    assert c.generator.ratios == [4, 4, 4, 4]
    assert c.audio.fmax == 8000.0 and type(c.audio.fmax) is float  # int promoted to float
    assert c.training.jit_compile is True
    assert c.g_optimizer.learning_rate == 2e-4
    assert c.data.path == "some/dir"


def test_exponent_without_a_dot_is_a_number(tmp_path):
    # YAML 1.1 (PyYAML) reads 1e-4 as the string '1e-4'; the config accepts it as a float.
    path = write(tmp_path / "c.yaml", "g_optimizer: {learning_rate: 3e-4}\naudio: {fmax: 8e3}\n")
    c = load_config(path, ["d_optimizer.learning_rate=2E-5"])
    assert c.g_optimizer.learning_rate == 3e-4 and c.d_optimizer.learning_rate == 2e-5
    assert c.audio.fmax == 8000.0
    # ... but only for number fields, and only strings that are numbers.
    assert config_error("training.batch_size=1e3") == \
        "training.batch_size: expected an integer, got '1e3'"
    assert config_error("g_optimizer.learning_rate=1e-") == \
        "g_optimizer.learning_rate: expected a number, got '1e-'"
    assert config_from_dict({}, ["data.path=1e-4"]).data.path == "1e-4"  # a string field


def test_override_beats_the_file(tmp_path):
    path = write(tmp_path / "c.yaml", "training:\n  batch_size: 4\n")
    assert load_config(path).training.batch_size == 4
    assert load_config(path, ["training.batch_size=2"]).training.batch_size == 2


def test_ratios_must_multiply_to_hop_length():
    # 8 * 8 * 4 = 256: consistent with hop 256, so it is accepted.
    c = config_from_dict({}, ["generator.ratios=[8,8,4]", "audio.hop_length=256"])
    assert c.generator.ratios == [8, 8, 4]
    # 8 * 8 * 2 = 128 != 256.
    msg = config_error("generator.ratios=[8,8,2]", "audio.hop_length=256")
    assert msg == ("the product of generator.ratios [8, 8, 2] is 128, but audio.hop_length is "
                   "256; they must be equal")
    msg = config_error("generator.ratios=[8,8,4]", "audio.hop_length=512")
    assert "generator.ratios" in msg and "audio.hop_length is 512" in msg


def test_ratios_must_be_positive():
    assert config_error("generator.ratios=[]") == "generator.ratios must be positive integers, got []"
    assert "got [16, -16, 1]" in config_error("generator.ratios=[16,-16,1]")
    assert config_error("generator.ratios=[8,8,2.0,2]") == \
        "generator.ratios[2]: expected an integer, got 2.0"
    assert config_error("generator.ratios=8") == "generator.ratios: expected a list, got 8"


def test_typo_in_override_names_the_key_and_suggests_the_right_one():
    msg = config_error("training.batch_sise=8")
    assert msg.startswith("unknown config key 'training.batch_sise' (did you mean 'batch_size'?)")
    assert "known: batch_size, segment_length" in msg


def test_typo_in_section_name():
    msg = config_error("trainig.batch_size=8")
    assert msg.startswith("unknown config key 'trainig' (did you mean 'training'?)")


def test_typo_in_yaml_file_names_file_and_key(tmp_path):
    path = write(tmp_path / "typo.yaml", "audio:\n  sample_rate: 22050\n"
                                         "training:\n  batch_sise: 8\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(
        f"{path}: unknown config key 'training.batch_sise' (did you mean 'batch_size'?)")


def test_unknown_key_without_a_close_match_lists_the_known_ones():
    msg = config_error("loss.zzz=1")
    assert msg == ("unknown config key 'loss.zzz'; known: lambda_feat, lambda_mel, "
                   "lambda_stft, stft_resolutions, lambda_phase, adversarial_weights, "
                   "feature_weights")


@pytest.mark.parametrize("override, message", [
    ("training.batch_size=abc", "training.batch_size: expected an integer, got 'abc'"),
    ("training.batch_size=1.5", "training.batch_size: expected an integer, got 1.5"),
    ("training.batch_size=true", "training.batch_size: expected an integer, got True"),
    ("training.batch_size=null", "training.batch_size: expected an integer, got None"),
    ("g_optimizer.learning_rate=fast", "g_optimizer.learning_rate: expected a number, got 'fast'"),
    ("training.jit_compile=2", "training.jit_compile: expected true/false, got 2"),
    ("data.path=[a, 1]", "data.path[1]: expected a string, got 1"),
    ("discriminator.periods=3", "discriminator.periods: expected a list, got 3"),
    ("training=8", "training: expected a mapping, got 8"),
])
def test_wrong_types_are_named(override, message):
    assert config_error(override) == message


def test_override_syntax_errors():
    assert config_error("training.batch_size") == \
        "override 'training.batch_size' must look like section.key=value"
    assert config_error("training.batch_size=[8").startswith(
        "override 'training.batch_size=[8': cannot parse value:")
    assert config_error("training.batch_size.x=1") == \
        "training.batch_size: expected an integer, got {'x': 1}"
    # Descending into a scalar that is already set: the dotted key is named.
    msg = config_error("training.batch_size.x=1", data={"training": {"batch_size": 4}})
    assert msg == "override 'training.batch_size.x': 'batch_size' is not a section"


@pytest.mark.parametrize("override, message", [
    ("training.batch_size=0", "training.batch_size must be positive, got 0"),
    ("training.batch_size=-4", "training.batch_size must be positive, got -4"),
    ("training.segment_length=0", "training.segment_length must be positive, got 0"),
    ("audio.n_mels=0", "audio.n_mels must be positive, got 0"),
    ("audio.sample_rate=-22050", "audio.sample_rate must be positive, got -22050"),
    ("generator.ngf=0", "generator.ngf must be positive, got 0"),
    ("discriminator.num_scales=0", "discriminator.num_scales must be positive (0 only beside periods or spectrogram_resolutions), got 0"),
    ("g_optimizer.learning_rate=0", "g_optimizer.learning_rate must be positive, got 0.0"),
    ("d_optimizer.learning_rate=-1e-4", "d_optimizer.learning_rate must be positive, got -0.0001"),
    ("data.gain_min=0", "data.gain_min must be positive, got 0.0"),
])
def test_non_positive_sizes(override, message):
    assert config_error(override) == message


def test_fmax_above_nyquist():
    msg = config_error("audio.fmax=12000")
    assert msg == ("need 0 <= audio.fmin < audio.fmax <= sample_rate / 2, got fmin=0.0, "
                   "fmax=12000.0, sample_rate=22050")
    assert config_from_dict({}, ["audio.fmax=11025"]).audio.fmax == 11025.0  # exactly sr/2 is ok
    assert "fmin=9000.0, fmax=8000.0" in config_error("audio.fmin=9000", "audio.fmax=8000")
    assert "fmin=-1.0" in config_error("audio.fmin=-1")


def test_segment_length_must_be_a_multiple_of_hop():
    assert config_error("training.segment_length=8000") == \
        "training.segment_length (8000) must be a multiple of audio.hop_length (256)"
    assert config_error("data.eval_segment_length=1000") == \
        "data.eval_segment_length (1000) must be a multiple of audio.hop_length (256)"
    assert config_from_dict({}, ["training.segment_length=256"]).training.segment_length == 256


def test_stft_consistency():
    assert config_error("audio.win_length=2048") == \
        "audio.win_length (2048) must be <= audio.n_fft (1024)"
    msg = config_error("audio.hop_length=255", "generator.ratios=[255]",
                       "training.segment_length=2550", "data.eval_segment_length=2550")
    assert msg.startswith("audio.n_fft - audio.hop_length must be even")


def test_mixed_precision_choices():
    assert config_error("training.mixed_precision=fp16") == (
        "training.mixed_precision must be one of ('none', 'auto', 'mixed_float16', "
        "'mixed_bfloat16'), got 'fp16'")
    for mode in ("none", "auto", "mixed_float16", "mixed_bfloat16"):
        assert config_from_dict({}, [f"training.mixed_precision={mode}"]) \
            .training.mixed_precision == mode


def test_other_cross_field_checks():
    assert config_error("data.gain_min=0.8", "data.gain_max=0.5") == \
        "need 0 < data.gain_min <= data.gain_max, got 0.8, 0.5"
    assert config_error("discriminator.ndf=6").startswith(
        "discriminator.ndf and max_channels must be multiples of 4")
    assert config_error("generator.init=xavier") == \
        "generator.init must be 'pytorch' or 'normal', got 'xavier'"
    assert config_error("loss.lambda_feat=-1") == "loss.lambda_feat must be >= 0"
    assert config_error("loss.lambda_mel=-1") == "loss.lambda_mel must be >= 0"
    assert config_from_dict({}, ["loss.lambda_feat=0"]).loss.lambda_feat == 0.0
    # Training needs held-out clips for validation / best-model selection.
    assert config_error("data.validation_clips=0") == "data.validation_clips must be >= 1, got 0"


def test_override_errors_from_load_config_name_the_file():
    with pytest.raises(ConfigError) as info:
        load_config(BASE, ["training.batch_size=abc"])
    assert str(info.value) == f"{BASE}: training.batch_size: expected an integer, got 'abc'"


# ---------------------------------------------------------------- bad files


def test_invalid_yaml(tmp_path):
    path = write(tmp_path / "broken.yaml", "training:\n  batch_size: [8\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (  # one line, PyYAML's locations kept
        f"{path} is not valid YAML: expected ',' or ']', but got '<stream end>' at line 3, "
        "column 1 (while parsing a flow sequence started at line 2, column 15)")


def test_invalid_yaml_without_context_and_in_an_override(tmp_path):
    path = write(tmp_path / "broken.yaml", "training:\n  batch_size: 8: 9\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (f"{path} is not valid YAML: mapping values are not allowed "
                               "here at line 2, column 16")
    with pytest.raises(ConfigError) as info:
        load_config(None, ["generator.ratios=[8, 8"])
    assert str(info.value) == ("override 'generator.ratios=[8, 8': cannot parse value: "
                               "expected ',' or ']', but got '<stream end>' at line 1, "
                               "column 6 (while parsing a flow sequence started at line 1, "
                               "column 1)")


@pytest.mark.parametrize("text, shown", [("- 1\n- 2\n", "[1, 2]"), ("hello\n", "'hello'"),
                                         ("5\n", "5")])
def test_yaml_that_is_not_a_mapping(tmp_path, text, shown):
    path = write(tmp_path / "c.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: config: expected a mapping of sections, got {shown}"


def test_section_that_is_not_a_mapping(tmp_path):
    path = write(tmp_path / "c.yaml", "training: [1, 2]\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: training: expected a mapping, got [1, 2]"


def test_empty_yaml_file_gives_the_defaults(tmp_path):
    assert load_config(write(tmp_path / "empty.yaml", "")) == Config()


def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"cannot read config {path}: No such file or directory"


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)
    assert [f.name for f in dataclasses.fields(Config)] == [
        "audio", "generator", "discriminator", "loss", "g_optimizer", "d_optimizer",
        "training", "data"]


# ---------------------------------------------------------------- CLI


def run_cli(python, *args):
    return subprocess.run([python, "-m", "tf_melgan.train", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def error_lines(stderr, prefix):
    return [line for line in stderr.splitlines() if line.startswith(prefix)]


def test_cli_config_error_is_one_line_without_traceback(tmp_path, python):
    path = write(tmp_path / "bad.yaml", "training:\n  batch_sise: 8\n")
    model_dir = tmp_path / "model"
    result = run_cli(python, "--config", path, "--model_dir", str(model_dir),
                     "--set", "training.steps=1")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = error_lines(result.stderr, "config error:")
    assert line.startswith(f"config error: {path}: unknown config key 'training.batch_sise' "
                           "(did you mean 'batch_size'?)")
    assert line == result.stderr.rstrip("\n").splitlines()[-1]  # it is the last thing printed
    assert not model_dir.exists()  # nothing was created for a config that does not load


def test_cli_data_without_audio(tmp_path, python):
    data = tmp_path / "no_audio"
    data.mkdir()
    (data / "README.txt").write_text("no audio here\n")
    result = run_cli(python, "--config", DEMO, "--model_dir", str(tmp_path / "m"),
                     "--data", str(data))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = error_lines(result.stderr, "data error:")
    assert line == ("data error: no audio files (.wav, .flac, .ogg, .oga, .aiff, .aif, .au) "
                    f"found under {data}")
    assert line == result.stderr.rstrip("\n").splitlines()[-1]
    assert not (tmp_path / "m").exists()  # no config.yaml (nor dir) before data loads


def test_data_path_takes_a_list_of_folders(audio_dir):
    from tf_melgan.data import find_audio_files
    c = config_from_dict({}, [f"data.path=[{audio_dir}, demo_data]"])
    assert c.data.path == [audio_dir, "demo_data"]
    files = find_audio_files(c.data.path)
    one, two = find_audio_files(audio_dir), find_audio_files("demo_data")
    assert files == list(dict.fromkeys(one + two))
    assert find_audio_files([audio_dir, audio_dir]) == one  # a file found twice counts once


@pytest.mark.parametrize("override, message", [
    ("loss.lambda_stft=-1", "loss.lambda_stft must be >= 0"),
    ("loss.stft_resolutions=[[512, 50]]", "loss.stft_resolutions[0] must be [n_fft, hop, win]"),
    ("loss.stft_resolutions=[[512, 50, 600]]", "loss.stft_resolutions[0] must be"),
    ("discriminator.periods=[2, 2]", "discriminator.periods must be distinct positive"),
    ("discriminator.periods=[0]", "discriminator.periods must be distinct positive"),
    ("generator.activation=relu", "generator.activation must be 'leaky_relu' or 'snake'"),
    ("training.discriminator_start_step=100", "training.discriminator_start_step > 0 trains"),
])
def test_opt_in_recipe_keys_are_validated(override, message):
    assert config_error(override).startswith(message)


def test_ljspeech_cpu_recipe_sets_its_levers_and_nothing_else_changes_the_paper():
    c = load_config(os.path.join(os.path.dirname(BASE), "ljspeech_cpu.yaml"))
    assert (c.generator.activation, c.generator.upsampling) == ("snake", "nearest")
    assert c.discriminator.periods == [2, 3, 5, 7, 11] and c.loss.lambda_mel == 45.0
    assert c.loss.lambda_stft == 10.0 and c.training.discriminator_start_step == 0
    assert c.loss.stft_resolutions == [[1024, 120, 600], [2048, 240, 1200], [512, 50, 240]]
    assert c.audio == Config().audio and c.loss.lambda_feat == 10.0  # the paper's features
    assert c.data.validation_clips == 16 and len(c.data.path) == 2


def test_ljspeech_gpu_recipe_is_the_cpu_one_at_the_papers_sizes():
    """What a GPU run changes (configs/ljspeech_gpu.yaml): sizes only, so that its result
    speaks for the CPU recipe's levers."""
    configs = os.path.dirname(BASE)
    cpu = load_config(os.path.join(configs, "ljspeech_cpu.yaml"))
    gpu = load_config(os.path.join(configs, "ljspeech_gpu.yaml"))
    assert (gpu.generator.ngf, gpu.discriminator.max_channels,
            gpu.discriminator.period_channels, gpu.training.batch_size) == (32, 1024, 32, 16)
    assert gpu.generator.ngf == Config().generator.ngf  # the paper's generator
    assert gpu.discriminator.max_channels == Config().discriminator.max_channels
    resized = dataclasses.replace(
        cpu, generator=dataclasses.replace(cpu.generator, ngf=32),
        discriminator=dataclasses.replace(cpu.discriminator, max_channels=1024,
                                          period_channels=32),
        training=dataclasses.replace(cpu.training, batch_size=16, steps_per_epoch=1000,
                                     checkpoint_every=1000))
    assert gpu == resized


def test_discriminator_weights_are_three_non_negative_values():
    assert config_error("loss.adversarial_weights=[1, 1]").startswith(
        "loss.adversarial_weights must be 3 weights >= 0")
    assert config_error("loss.feature_weights=[1, -1, 1]").startswith(
        "loss.feature_weights must be 3 weights >= 0")
