"""Atomic writes (tf_melgan.atomic): the target is the old file or the new one, never a mix,
whatever happens during the write (an exception, a full disk, kill -9); errors are one line
naming the path and the reason."""

import errno
import os
import re
import signal
import subprocess
import sys

import pytest

from conftest import ROOT
from tf_melgan.atomic import (TMP_PREFIX, WriteError, check_writable, describe,
                              remove_temporaries, replacing, replacing_all, write_text)


def listing(folder):
    return sorted(os.listdir(folder))


def test_new_content_appears_only_when_complete(tmp_path):
    target = tmp_path / "best.json"
    target.write_text("old")
    with replacing(target) as tmp:
        assert os.path.dirname(tmp) == str(tmp_path)  # same file system: rename is atomic
        assert os.path.basename(tmp).startswith(TMP_PREFIX)
        assert tmp.endswith("-best.json")  # the extension is kept (soundfile, Keras pick by it)
        with open(tmp, "w") as f:
            f.write("new, half")
        assert target.read_text() == "old"
        with open(tmp, "a") as f:
            f.write(" and done")
    assert target.read_text() == "new, half and done"
    assert listing(tmp_path) == ["best.json"]


def test_an_error_in_the_block_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "config.yaml"
    target.write_text("old")
    with pytest.raises(KeyError):
        with replacing(target) as tmp:
            with open(tmp, "w") as f:
                f.write("partial")
            raise KeyError("writer failed")
    assert target.read_text() == "old"
    assert listing(tmp_path) == ["config.yaml"]


def test_several_files_are_renamed_only_when_all_are_written(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"old a")
    b.write_bytes(b"old b")
    with pytest.raises(WriteError) as info:
        with replacing_all([a, b]) as (ta, tb):
            with open(ta, "wb") as f:
                f.write(b"new a")
            raise OSError(errno.ENOSPC, "No space left on device", tb)  # b fails
    assert (a.read_bytes(), b.read_bytes()) == (b"old a", b"old b")
    assert listing(tmp_path) == ["a.bin", "b.bin"]
    assert str(info.value).startswith(f"{b}: no space left on device (")  # names b, not a
    assert info.value.errno == errno.ENOSPC


def test_write_text_and_missing_folders(tmp_path):
    path = tmp_path / "new" / "dir" / "config.yaml"
    write_text(path, "a: 1\n")
    assert path.read_text() == "a: 1\n"


def test_full_disk_is_one_line_with_space_needed_and_free(tmp_path, tmpfs):
    """256 kB tmpfs and a 400 kB write (or, without mount rights, the same ENOSPC raised
    by the writer): the old file stays, no temporary is left."""
    disk = tmpfs("256k") or tmp_path
    target = disk / "best_generator.weights.h5"
    target.write_bytes(b"old best")
    with pytest.raises(WriteError) as info:
        with replacing(target, need_bytes=400_000) as tmp:
            with open(tmp, "wb") as f:
                if disk == tmp_path:  # injected
                    f.write(b"x" * 1000)
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                f.write(b"x" * 400_000)
                f.flush()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{target}: no space left on device (needs about 0.40 MB, ")
    assert re.search(r" \d+\.\d\d [MG]B free\)$", message), message
    assert target.read_bytes() == b"old best"
    assert listing(disk) == ["best_generator.weights.h5"]


def test_check_writable_on_a_read_only_place(read_only_dir):
    target = read_only_dir / "out.wav"
    with pytest.raises(WriteError) as info:
        check_writable(target)
    assert str(info.value) in (f"{target}: {os.strerror(errno.EROFS)}",
                               f"{target}: {os.strerror(errno.EACCES)}")
    assert listing(read_only_dir) == []


def test_check_writable_wants_the_space(tmp_path, tmpfs):
    disk = tmpfs("128k")
    if disk is None:
        pytest.skip("needs a small tmpfs (root)")
    check_writable(disk / "small.wav", need_bytes=64_000)
    with pytest.raises(WriteError, match=r"big\.wav: not enough space \(needs about 0\.50 MB, "
                                         r"0\.13 MB free\)"):
        check_writable(disk / "big.wav", need_bytes=500_000)
    assert listing(disk) == []  # the probe file is gone


@pytest.mark.parametrize("error, reason", [
    # TensorFlow's checkpoint writer (ResourceExhaustedError's message), HDF5 via h5py,
    # libsndfile (which says no more than this: decided by the free space, here none).
    (RuntimeError("/m/ckpt-2_temp/part-0.tempstate1; No space left on device [Op:SaveV2]"),
     "no space left on device"),
    (RuntimeError("Can't write data (file write failed: errno = 30, error message = 'x')"),
     os.strerror(errno.EROFS)),
    (PermissionError(errno.EACCES, "Permission denied"), os.strerror(errno.EACCES)),
    (ValueError("something else\nsecond line"), "ValueError: something else"),
])
def test_describe_reads_the_reason_from_other_libraries(error, reason):
    assert describe(error, "/m/file").startswith(f"/m/file: {reason}")


def test_libsndfile_on_a_full_disk(tmpfs):
    """libsndfile's "System error." on a real full disk becomes "no space left"; no cut-off
    wav is left at the path."""
    import numpy as np
    import soundfile as sf

    disk = tmpfs("128k")
    if disk is None:
        pytest.skip("needs a small tmpfs (root)")
    target = disk / "out.wav"
    with pytest.raises(WriteError) as info:
        with replacing(target, need_bytes=400_044) as tmp:
            sf.write(tmp, np.zeros(200_000, np.float32), 22050)
    assert str(info.value).startswith(f"{target}: no space left on device (needs about "
                                      "0.40 MB, 0.")
    assert listing(disk) == []


def test_remove_temporaries_removes_only_ours(tmp_path):
    (tmp_path / f"{TMP_PREFIX}123-abcdef-best_generator.weights.h5").write_bytes(b"x")
    (tmp_path / "best_generator.weights.h5").write_bytes(b"y")
    (tmp_path / ".tmpfile").write_bytes(b"z")  # not our prefix
    removed = remove_temporaries(tmp_path)
    assert [os.path.basename(p) for p in removed] == [
        f"{TMP_PREFIX}123-abcdef-best_generator.weights.h5"]
    assert listing(tmp_path) == [".tmpfile", "best_generator.weights.h5"]


WRITER = """
import sys, time
from tf_melgan.atomic import replacing
with replacing(sys.argv[1]) as tmp:
    with open(tmp, "wb") as f:
        f.write(b"half of the new file")
        f.flush()
        print("writing", flush=True)
        time.sleep(60)
"""


def test_kill_9_mid_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "best.json"
    target.write_bytes(b"the old file")
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "writing\n"
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert target.read_bytes() == b"the old file"
    (debris,) = [n for n in listing(tmp_path) if n != "best.json"]
    assert debris.startswith(TMP_PREFIX) and debris.endswith("-best.json")
    assert remove_temporaries(tmp_path) == [str(tmp_path / debris)]
