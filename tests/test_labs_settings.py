"""Lab 1's settings chooser: the lab's settings on a GPU, in quick mode and on request; shorter ones on a CPU.

Nothing here is timed: the bf16 probe is replaced by a stub that records which networks it was asked about.
"""

import pytest

from vislab.labs.settings import (
    CPU_BATCH_SIZE,
    CPU_EPOCHS,
    LAB_BATCH_SIZE,
    LAB_EPOCHS,
    NETWORKS,
    REGISTRY_NAMES,
    lab1_settings,
)
from vislab.mnist.models import list_models


def never_called(network, batch_size):
    raise AssertionError("the bf16 probe must not run here")


@pytest.mark.parametrize("device_type", ["cuda", "mps"])
def test_a_gpu_keeps_the_lab_settings(device_type):
    s = lab1_settings(device_type, native_bf16=True, bf16_faster=never_called)
    assert s.lab and s.epochs == dict.fromkeys(NETWORKS, LAB_EPOCHS) and s.batch_size == LAB_BATCH_SIZE
    assert not s.channels_last and not any(s.bf16.values())


@pytest.mark.parametrize("device_type", ["cpu", "cuda"])
def test_quick_mode_is_the_lab_with_one_epoch(device_type):
    s = lab1_settings(device_type, quick=True, lab=False, native_bf16=True, bf16_faster=never_called)
    assert s.lab and s.epochs == dict.fromkeys(NETWORKS, 1) and s.batch_size == 64
    assert not s.channels_last and not any(s.bf16.values())


def test_lab_settings_on_request_on_a_cpu():
    s = lab1_settings("cpu", lab=True, native_bf16=True, bf16_faster=never_called)
    assert s.lab and s.epochs == dict.fromkeys(NETWORKS, LAB_EPOCHS) and "LAB_SETTINGS" in s.describe()


def test_cpu_without_native_bf16_trains_shorter_in_fp32():
    s = lab1_settings("cpu", native_bf16=False, bf16_faster=never_called)
    assert not s.lab and s.epochs == CPU_EPOCHS and s.batch_size == CPU_BATCH_SIZE and s.channels_last
    assert not any(s.bf16.values())
    assert s.epochs["SimpleVGG"] < LAB_EPOCHS and s.epochs["SimpleResNet"] < LAB_EPOCHS
    text = s.describe()
    assert "fp32" in text and "bfloat16 autocast off" in text and "one-cycle" in text


def test_cpu_with_native_bf16_asks_the_probe_for_the_large_networks_only():
    asked = []

    def vgg_only(network, batch_size):
        asked.append((network, batch_size))
        return network == "SimpleVGG"

    s = lab1_settings("cpu", native_bf16=True, bf16_faster=vgg_only)
    assert asked == [("SimpleVGG", CPU_BATCH_SIZE), ("SimpleResNet", CPU_BATCH_SIZE)]
    assert s.bf16 == {"MLP": False, "SimpleCNN": False, "SimpleVGG": True, "SimpleResNet": False}
    assert "bfloat16 autocast for SimpleVGG" in s.describe()


def test_the_settings_are_fresh_copies():
    s = lab1_settings("cpu", native_bf16=False)
    s.epochs["SimpleVGG"] = 99  # a student editing EPOCHS in the notebook must not change the module's table
    assert CPU_EPOCHS["SimpleVGG"] != 99 and lab1_settings("cpu", native_bf16=False).epochs["SimpleVGG"] != 99


def test_registry_names_exist():
    assert set(REGISTRY_NAMES) == set(NETWORKS) and set(REGISTRY_NAMES.values()) <= set(list_models())


def test_the_probe_keeps_fp32_without_native_bf16_and_measures_with_it(monkeypatch):
    import vislab.mnist.precision as precision
    from vislab.labs.settings import probe_bf16

    asked = []

    def measured(model_name, model_kwargs, batch_size, device, channels_last=True):
        asked.append((model_name, batch_size))
        return {"fp32": 2.0, "bf16": 1.0} if model_name == "vgg" else {"fp32": 1.0, "bf16": 1.05}

    monkeypatch.setattr(precision, "measure_precisions", measured)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert not probe_bf16("SimpleVGG", 128) and asked == []
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert probe_bf16("SimpleVGG", 128) and not probe_bf16("SimpleResNet", 128)
    assert asked == [("vgg", 128), ("resnet", 128)]
