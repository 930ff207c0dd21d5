import subprocess
import sys

import vqcodec
from vqcodec.cli import main


def test_import_vqcodec_does_not_import_torch():
    code = "import sys, vqcodec, vqcodec.errors; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_version_and_lazy_names():
    assert vqcodec.__version__
    assert "encode_image" in dir(vqcodec)


def test_cli_usage_error_exit_code(capsys):
    try:
        main(["no-such-command"])
    except SystemExit as exc:
        assert exc.code == 2
    else:
        raise AssertionError("argparse accepted an unknown command")
