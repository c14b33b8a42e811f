"""GAE: the batched implementation against a naive per-env, per-agent loop."""

import torch

from accord.credit.gae import gae


def naive_gae(r, v, v_next, term, done, gamma, lam):
    t_len, b, n = v.shape
    adv = torch.zeros_like(v)
    for e in range(b):
        for a in range(n):
            running = 0.0
            for t in reversed(range(t_len)):
                delta = r[t, e, a] + gamma * v_next[t, e, a] * (1 - float(term[t, e])) - v[t, e, a]
                running = delta + gamma * lam * (1 - float(done[t, e])) * running
                adv[t, e, a] = running
    return adv


def test_matches_naive_reference_with_terminations_and_truncations():
    g = torch.Generator().manual_seed(0)
    t_len, b, n = 12, 5, 3
    r, v, v_next = (torch.randn(t_len, b, n, generator=g) for _ in range(3))
    term = torch.rand(t_len, b, generator=g) < 0.15
    trunc = (torch.rand(t_len, b, generator=g) < 0.15) & ~term
    done = term | trunc
    fast = gae(r, v, v_next, term, done, 0.97, 0.9)
    assert torch.allclose(fast, naive_gae(r, v, v_next, term, done, 0.97, 0.9), atol=1e-5)


def test_golden_values():
    # One env, one agent, rewards 1 each step, zero values, episode ends (terminated) at t=1.
    r = torch.ones(3, 1, 1)
    v = torch.zeros(3, 1, 1)
    term = torch.tensor([[False], [True], [False]])
    adv = gae(r, v, v.clone(), term, term, gamma=0.5, lam=1.0)
    assert adv.flatten().tolist() == [1.5, 1.0, 1.0]


def test_truncation_bootstraps_from_the_final_value():
    # A truncated step keeps gamma * V(final obs); a terminated one drops it.
    r, v = torch.zeros(1, 1, 1), torch.zeros(1, 1, 1)
    v_final = torch.full((1, 1, 1), 10.0)
    trunc = torch.tensor([[True]])
    assert gae(r, v, v_final, ~trunc, trunc, 0.9, 0.95).item() == 9.0
    assert gae(r, v, v_final, trunc, trunc, 0.9, 0.95).item() == 0.0
