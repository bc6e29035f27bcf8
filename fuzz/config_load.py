"""config.json loading (rmail/config.py): ``config.load`` of a file holding the input.

``load`` documents ``ConfigError`` ("raise ConfigError with a one-line reason") for a
file it cannot use; the server, the CLI and SIGHUP's reload catch only that, so any other
exception is a crash.  The file is written to a temporary directory (on /dev/shm when
there is one) before each call.
"""

import atexit
import os
import shutil
import tempfile

import harness

with harness.instrumented():
    from rmail import config

EXPECTED = (config.ConfigError,)

_DIR = tempfile.mkdtemp(prefix="rmail-fuzz-config-",
                        dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
atexit.register(shutil.rmtree, _DIR, True)
PATH = os.path.join(_DIR, "config.json")


def test_one_input(data: bytes):
    with open(PATH, "wb") as f:
        f.write(data)
    loaded = config.load(PATH)
    loaded.to_dict()
    loaded.listeners()


if __name__ == "__main__":
    harness.main(test_one_input, EXPECTED)
