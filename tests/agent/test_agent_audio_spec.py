"""``--audio device:NAME`` read as the other ``--audio`` values are: a clear error for a value
that cannot be a device name, the name kept as given otherwise."""

from __future__ import annotations

import subprocess
import sys

import pytest

from softphone.agent.audio import AudioSpec, AudioSpecError


@pytest.mark.parametrize("name", ["USB Headset", "hw:1,0", "softphone_test_file"])
def test_a_device_name_is_kept_as_given(name: str) -> None:
    spec = AudioSpec.parse(f"device:{name}")
    assert spec.kind == "device" and spec.device == name
    assert spec.describe() == f"device:{name}" and spec.record is None


@pytest.mark.parametrize("text", ["device:", "device: ", "device:a\nb", "devices:x"])
def test_a_value_that_is_no_device_name_is_an_error_saying_what_is_expected(text: str) -> None:
    with pytest.raises(AudioSpecError) as err:
        AudioSpec.parse(text)
    assert "device:NAME" in str(err.value), err.value


def test_without_config_and_without_list_devices_the_agent_says_what_is_missing() -> None:
    run = subprocess.run([sys.executable, "-m", "softphone", "agent"], capture_output=True,
                         text=True, timeout=30, check=False)
    assert run.returncode == 2 and "--config is required" in run.stderr, run.stderr
