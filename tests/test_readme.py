"""The README's Python API snippet runs as written, from the repo root, with `runs/demo`
being a model dir that `tf_melgan.train` wrote (the tiny run of conftest's trained_run)."""

import os
import re

import numpy as np
import soundfile as sf

from conftest import ROOT


def python_api_snippet() -> str:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    section = readme[readme.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_python_api_snippet_runs(trained_run, tmp_path, monkeypatch):
    # A working directory laid out like the repo after the quick start.
    (tmp_path / "runs").mkdir()
    os.symlink(trained_run["model_dir"], tmp_path / "runs" / "demo")
    for name in ("demo_data", "configs"):
        os.symlink(os.path.join(ROOT, name), tmp_path / name)
    monkeypatch.chdir(tmp_path)
    names = {}
    exec(compile(python_api_snippet(), "README.md", "exec"), names)

    from tf_melgan.audio import load_audio
    from tf_melgan.synthesize import synthesize

    audio = load_audio(os.path.join(ROOT, "demo_data", "wavs", "demo_000.flac"), 22050)
    frames = len(audio) // 256
    written, rate = sf.read(tmp_path / "runs" / "demo_000_vocoded.wav", dtype="float32")
    assert rate == 22050 and written.shape == (frames * 256,)
    # The trained model's best generator, as synthesize() runs it (16-bit wav rounding).
    mel = np.asarray(names["mel"])[0]
    np.testing.assert_allclose(written, synthesize(trained_run["model_dir"], mel),
                               atol=2.0 / 32768)
    assert names["untrained"].shape == (1, frames * 256)
    assert names["shipped"].shape == (1, frames * 256) and names["vocoder"].sample_rate == 22050
    assert names["plain"].weight_norm is False


def test_every_command_of_the_readme_and_docs_writes_under_runs():
    """What the README's and docs' commands write (--output, --model_dir of train, --out)
    is below runs/ (in .gitignore): after them `git status` stays clean."""
    import glob
    written = []
    docs = sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
    for path in [os.path.join(ROOT, "README.md"), *docs]:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        commands = [line for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, re.S)
                    for line in block.replace("\\\n", " ").splitlines()]
        commands += [span for span in re.findall(r"`([^`\n]+)`", text) if "python" in span]
        for command in commands:
            outputs = re.findall(r"--(?:output|out)[ =](\S+)", command)
            if "tf_melgan.train" in command:
                outputs += re.findall(r"--model_dir[ =](\S+)", command)
            written += [(os.path.basename(path), out) for out in outputs]
    assert len(written) >= 10, written
    outside = [(doc, out) for doc, out in written if not out.startswith(("runs/", "/tmp/"))]
    assert outside == []
    with open(os.path.join(ROOT, ".gitignore"), encoding="utf-8") as f:
        assert "runs/" in f.read().split()
