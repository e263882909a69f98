"""A checkpoint carries every random generator a run draws from, the GPUs' included, and restores them; Ctrl-C
waits for the checkpoint being written."""

from __future__ import annotations

import os
import signal
import threading

import pytest
import torch

from trainer import checkpoint


def test_the_cpu_generator_comes_back() -> None:
    torch.manual_seed(3)
    states = checkpoint.rng_states()
    expected = torch.rand(4)
    torch.rand(10)  # the run goes on drawing
    checkpoint.restore_rng(states)
    assert torch.equal(torch.rand(4), expected)


def test_each_gpus_generator_is_saved_and_restored(monkeypatch, tmp_path) -> None:
    """With CUDA present (mocked: this test runs on any machine), the checkpoint holds every device's state and
    a resume sets them back, after torch.manual_seed has reset them."""
    gpus = [torch.tensor([1, 2], dtype=torch.uint8), torch.tensor([3, 4], dtype=torch.uint8)]
    restored: list[list[torch.Tensor]] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [state.clone() for state in gpus])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.append)
    checkpoint.save(tmp_path, {"rng": checkpoint.rng_states()})
    states = checkpoint.load(tmp_path, torch.device("cpu"))["rng"]
    assert [state.tolist() for state in states["cuda"]] == [[1, 2], [3, 4]]
    checkpoint.restore_rng(states)
    assert [[state.tolist() for state in call] for call in restored] == [[[1, 2], [3, 4]]]


def test_a_checkpoint_with_the_cpu_generator_alone_still_resumes() -> None:
    torch.manual_seed(5)
    state = torch.get_rng_state()
    expected = torch.rand(3)
    checkpoint.restore_rng(state)  # the layout of checkpoints written before the GPUs' states were kept
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="POSIX signals")
def test_ctrl_c_while_a_checkpoint_is_written_waits_for_the_block_to_end() -> None:
    """With other threads about (torch's, DuckDB's), the kernel may hand the SIGINT to one of them: the interrupt
    must still come after the block, never inside it (where torch.save can swallow it)."""
    assert threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    stop = threading.Event()
    neighbour = threading.Thread(target=stop.wait)
    neighbour.start()
    ended = False
    try:
        with pytest.raises(KeyboardInterrupt), checkpoint.interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            stop.wait(0.05)
            for _ in range(10_000):  # bytecode, between which Python runs its handlers
                pass
            ended = True
    finally:
        stop.set()
        neighbour.join()
        signal.signal(signal.SIGINT, previous)
    assert ended
