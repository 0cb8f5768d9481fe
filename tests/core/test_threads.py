import threading

import pytest
import torch

from core import inference, threads

pytestmark = pytest.mark.skipif(torch.get_num_threads() < 2,
                                reason="the workers exist only with 2 or more torch threads")


def _count_in_new_thread() -> int:
    counts = []
    thread = threading.Thread(target=lambda: counts.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    return counts[0]


def test_workers_use_one_thread():
    streams = threads.cpu_streams()
    assert streams is not None
    assert streams.map(lambda _: torch.get_num_threads(), range(4)) == [1, 1, 1, 1]


def test_default_count_kept():
    default = torch.get_num_threads()
    threads.cpu_streams()
    assert torch.get_num_threads() == default
    assert _count_in_new_thread() == default


def test_pool_is_shared():
    assert threads.cpu_streams() is threads.cpu_streams()


def _spy_streams(monkeypatch) -> list[int]:
    """Count how many batches go through the workers."""
    streams = threads.cpu_streams()
    calls = []
    real_map = streams.map

    def counting_map(fn, items):
        calls.append(len(items))
        return real_map(fn, items)

    monkeypatch.setattr(streams, "map", counting_map)
    return calls


TEXTS = ["The cat sat on the mat.", "Hi", "A deaf person smiles at the party.", "The cat",
         "Two plus two equals five, said the party.", "What is two plus two?", "It is four.",
         "A Muslim man walks home."]


def test_streams_equal_sequential(tiny_lm, monkeypatch):
    calls = _spy_streams(monkeypatch)
    split = inference.hidden_states(tiny_lm, TEXTS, batch_size=2)
    assert calls == [4]
    monkeypatch.setattr(threads, "cpu_streams", lambda: None)
    together = inference.hidden_states(tiny_lm, TEXTS, batch_size=2)
    for pooling in ("last", "mean"):
        assert torch.allclose(split[pooling], together[pooling], atol=1e-6)


def test_few_batches_stay_in_caller(tiny_lm, monkeypatch):
    calls = _spy_streams(monkeypatch)
    inference.hidden_states(tiny_lm, TEXTS, batch_size=4)  # 2 batches for 2 workers
    assert calls == []


def test_autocast_reaches_workers(tiny_lm, monkeypatch):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        split = inference.hidden_states(tiny_lm, TEXTS, batch_size=2)
    plain = inference.hidden_states(tiny_lm, TEXTS, batch_size=2)
    monkeypatch.setattr(threads, "cpu_streams", lambda: None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        together = inference.hidden_states(tiny_lm, TEXTS, batch_size=2)
    assert torch.allclose(split["last"], together["last"], atol=1e-6)
    assert not torch.allclose(split["last"], plain["last"], atol=1e-6)
