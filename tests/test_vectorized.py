"""Vectorized training (vaelab.vectorized): a group of members trained as one stacked model must
behave, member by member, like `train` run on each config alone."""

import math
import re
import statistics

import pytest
import torch

from clihelp import one_thread  # noqa: F401  (registers the module-wide one-thread fixture)
from vaelab.checkpoint import load_run, load_state
from vaelab.config import load_config
from vaelab.data import Dataset, load_data
from vaelab.errors import TrainingDiverged, UserError
from vaelab.losses import loss_weights
from vaelab.models import build_model
from vaelab.runfolder import load_tensors, read_jsonl, read_toml
from vaelab.train import Run, epoch_order, train
from vaelab.vectorized import StackedAdam, group_key, train_group

# small 12x12 points images, a small dense VAE
POINTS = {"data.n": 128, "data.size": 12, "train.batch_size": 32, "model.hidden": [32, 16], "model.latent_dim": 4, "sample.n": 4}
# 6x6 grids of 2x2 squares with little pixel noise, so the loss is mostly what the model learns
SQUARES = {
    "data.name": "squares",
    "data.grid": 2,
    "data.square": 3,
    "data.noise_var": 0.01,
    "data.n": 256,
    "train.batch_size": 32,
    "model.hidden": [32, 16],
    "model.latent_dim": 4,
    "sample.n": 4,
}


def cfg(base: dict, **over):
    """A config from `base` and dotted overrides written with '__' for '.' (train__lr=...)."""
    return load_config(overrides={**base, **{k.replace("__", "."): v for k, v in over.items()}})


def tail_mean(history: list[dict], key: str, n: int = 50) -> float:
    return statistics.mean(r[key] for r in history[-n:])


def fresh_model(config, shape):
    """The initialisation `train` gives this config: build_model right after manual_seed(train.seed)."""
    torch.manual_seed(config.train.seed)
    return build_model(config, shape)


def max_abs_diff(a: dict, b: dict) -> float:
    """Largest difference between two state dicts, compared on the CPU (either may live on a GPU)."""
    assert a.keys() == b.keys()
    return max((a[k].float().cpu() - b[k].float().cpu()).abs().max().item() for k in a)


# ---------------------------------------------------------------------------------------------
# StackedAdam


@pytest.mark.parametrize("lrs", [[1e-3, 3e-2, 0.5], [1e-2, 1e-2, 1e-2]], ids=["own-lr", "same-lr"])
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_stacked_adam_equals_one_torch_adam_per_member(lrs, layout):
    """k steps of StackedAdam over stacked copies == M separate torch.optim.Adam(lr=lr_m), moments too.

    `transposed` hands the matrix gradients over with transposed strides, as the gradients of a
    vmapped Linear weight come out of torch.autograd.grad (values are the same, layout is not)."""
    m, k = len(lrs), 12
    g = torch.Generator().manual_seed(0)
    shapes = [(4, 5), (5,), (2, 3, 3)]
    init = [torch.randn(m, *s, generator=g) for s in shapes]  # (M, …) each
    stacked = [p.clone().requires_grad_() for p in init]  # leaves, as train_group hands them over
    adam = StackedAdam(stacked, torch.tensor(lrs))
    singles = [[p[i].clone().requires_grad_() for p in init] for i in range(m)]
    torch_adams = [torch.optim.Adam(ps, lr=lr, foreach=False) for ps, lr in zip(singles, lrs)]
    scale = [10.0**i for i in range(m)]  # each member its own gradient scale: moments are per member
    for _ in range(k):
        grads = []
        for s in shapes:
            gr = torch.randn(m, *s, generator=g) * torch.tensor(scale).view(-1, *[1] * len(s))
            if layout == "transposed" and len(s) == 2:
                gr = gr.transpose(1, 2).contiguous().transpose(1, 2)  # same values, column-major strides
                assert not gr.is_contiguous()
            grads.append(gr)
        adam.step(grads)
        for i in range(m):
            for p, gr in zip(singles[i], grads):
                p.grad = gr[i].clone()
            torch_adams[i].step()
    for i in range(m):
        for j in range(len(shapes)):
            torch.testing.assert_close(stacked[j][i].detach(), singles[i][j].detach(), rtol=1e-6, atol=1e-6)
        states = adam.member_state(i)
        assert len(states) == len(shapes)
        for p, st in zip(singles[i], states):
            ref = torch_adams[i].state[p]
            assert float(st["step"]) == float(ref["step"]) == k
            torch.testing.assert_close(st["exp_avg"], ref["exp_avg"], rtol=1e-5, atol=1e-6 * scale[i])
            torch.testing.assert_close(st["exp_avg_sq"], ref["exp_avg_sq"], rtol=1e-5, atol=1e-6 * scale[i] ** 2)
    # the comparison has teeth: every member moved, by an amount set by its own learning rate
    for i in range(m):
        moved = (stacked[0][i].detach() - init[0][i]).abs().max().item()
        assert 0.5 * lrs[i] < moved < 2 * k * lrs[i]


# ---------------------------------------------------------------------------------------------
# Each member is itself: initialisation, data, data order, learning rate, loss weights


def test_each_member_starts_from_its_own_seeds_initialisation():
    """With lr = 1e-12 a member cannot move off its initialisation (Adam's step is about lr per
    weight), so after training it must equal build_model under torch.manual_seed(its seed). A
    member with a real lr in the same group must have moved: the learning rate is per member."""
    seeds, lrs = [3, 0, 7, 5], [1e-12, 1e-12, 1e-12, 1e-2]
    configs = [cfg(POINTS, train__seed=s, train__lr=lr, train__steps=3, data__seed=s) for s, lr in zip(seeds, lrs)]
    datas = [load_data(c.data) for c in configs]
    runs = train_group(configs, datas, [None] * 4, quiet=True)
    assert all(isinstance(r, Run) for r in runs)
    inits = [fresh_model(c, d.shape).state_dict() for c, d in zip(configs, datas)]
    for i in range(3):
        assert max_abs_diff(runs[i].model.state_dict(), inits[i]) < 1e-9, f"member {i} (seed {seeds[i]})"
        others = [j for j in range(4) if j != i]
        assert all(max_abs_diff(runs[i].model.state_dict(), inits[j]) > 1e-2 for j in others)  # seeds do matter
    assert max_abs_diff(runs[3].model.state_dict(), inits[3]) > 5e-3  # 3 Adam steps at 1e-2


def test_each_member_sees_its_own_data_in_its_own_order():
    """The deterministic `ae` model at lr = 1e-12 stays at its initialisation, so the loss logged
    at step s is a known number: that model's loss on batch s of its own images shuffled by
    epoch_order(its seed, epoch). 7 steps of 3 per epoch cross two epoch boundaries."""
    n, b, steps = 48, 16, 7
    members = [(0, 11), (4, 2), (9, 9)]  # (train.seed, data.seed)
    configs = [
        cfg(POINTS, model__name="ae", data__n=n, train__batch_size=b, train__steps=steps, train__lr=1e-12, train__seed=s, data__seed=ds)
        for s, ds in members
    ]
    datas = [load_data(c.data) for c in configs]
    runs = train_group(configs, datas, [None] * 3, quiet=True)

    def expected(config, data, order_seed):
        model = fresh_model(config, data.shape)
        out = []
        with torch.no_grad():
            for step in range(steps):
                epoch, i = divmod(step, n // b)
                batch = data.images[epoch_order(order_seed, epoch, n)][i * b : (i + 1) * b]
                out.append(model.loss(batch, step, loss_weights(config.loss, step))["loss"].item())
        return out

    for m, (c, d, r) in enumerate(zip(configs, datas, runs)):
        logged = [row["loss"] for row in r.history]
        assert [row["step"] for row in r.history] == list(range(steps))
        assert [row["epoch"] for row in r.history] == [0, 0, 0, 1, 1, 1, 2]
        assert logged == pytest.approx(expected(c, d, c.train.seed), rel=1e-5)
        # teeth: another member's shuffle, or another member's images, give other losses
        other = members[(m + 1) % 3][0]
        assert max(abs(a / e - 1) for a, e in zip(logged, expected(c, d, other))) > 1e-3
        assert max(abs(a / e - 1) for a, e in zip(logged, expected(c, datas[(m + 1) % 3], c.train.seed))) > 1e-3


def test_deterministic_members_follow_their_sequential_runs_closely():
    """Without reparameterisation noise (`ae`) nothing is random after the seeds, so each member
    must retrace `train` step by step, up to float rounding (vmap's batched matmuls and Adam's
    lr rescaling are not bitwise the plain ones). Members differ in seed, data, lr and weights.
    On the CPU, where the tolerances were measured."""
    members = [(0, 1e-3, 0.0, 1.0), (1, 3e-3, 0.5, 1.0), (2, 1e-2, 0.0, 2.0)]  # seed, lr, variability, recon weight
    configs = [
        cfg(POINTS, model__name="ae", data__n=100, train__batch_size=16, train__steps=40, train__seed=s, data__seed=s,
            train__lr=lr, loss__variability_weight=vw, loss__recon_weight=rw, train__device="cpu")
        for s, lr, vw, rw in members
    ]
    datas = [load_data(c.data) for c in configs]
    runs = train_group(configs, datas, [None] * 3, quiet=True)
    for c, d, r in zip(configs, datas, runs):
        alone = train(c, d, quiet=True)
        assert len(r.history) == len(alone.history) == 40
        for key in ("loss", "recon"):
            assert [row[key] for row in r.history] == pytest.approx([row[key] for row in alone.history], rel=1e-4), key
        assert max_abs_diff(r.model.state_dict(), alone.model.state_dict()) < 1e-4
        assert alone.history[-1]["loss"] < 0.9 * alone.history[0]["loss"]  # it did train


def test_vectorized_and_sequential_training_reach_matching_losses():
    """Four VAEs differing in β, lr and the data's μ: each member's mean loss over the last 50
    steps agrees with the same config trained alone by `train`.

    Not bitwise: inside the group the reparameterisation noise is drawn per member by
    vmap(randomness="different"), not from each member's own global RNG stream as `train` draws
    it, so the two runs see different noise and agree only in distribution. Measured gaps over 8
    seed sets were at most 0.9%; RTOL = 3% leaves margin, while the members' own losses are at
    least 15% apart, so a member trained with another's settings or data cannot pass."""
    rtol = 0.03
    members = [(0.5, 2e-3, 0.0), (1.0, 1e-3, 2.0), (2.0, 4e-3, -3.0), (4.0, 3e-3, 1.0)]  # beta, lr, mu
    configs = [
        cfg(SQUARES, loss__beta=beta, train__lr=lr, data__mu=mu, train__seed=i, train__steps=300)
        for i, (beta, lr, mu) in enumerate(members)
    ]
    datas = [load_data(c.data) for c in configs]
    group = [tail_mean(r.history, "loss") for r in train_group(configs, datas, [None] * 4, quiet=True)]
    alone = [tail_mean(train(c, d, quiet=True).history, "loss") for c, d in zip(configs, datas)]
    for i in range(4):
        assert group[i] == pytest.approx(alone[i], rel=rtol), f"member {i}: group {group[i]:.4f}, alone {alone[i]:.4f}"
        for j in range(4):
            if j != i:  # teeth: the members are told apart by this tolerance
                assert abs(group[i] / alone[j] - 1) > 3 * rtol


def test_each_member_is_trained_with_its_own_beta():
    """Members identical but for β ∈ {0.1, 1, 10}: the KL term falls strictly as β rises; the
    logged β is each member's own, and every row's loss is recon + β·KL with that β."""
    betas = [0.1, 1.0, 10.0]
    configs = [cfg(POINTS, data__n=256, train__steps=300, train__lr=3e-3, loss__beta=beta) for beta in betas]
    data = load_data(configs[0].data)
    runs = train_group(configs, [data] * 3, [None] * 3, quiet=True)
    kl = [tail_mean(r.history, "kl") for r in runs]
    assert kl[0] > kl[1] > kl[2] >= 0, kl
    assert kl[0] > 2 * kl[1]  # measured about 10x apart: β, not noise, orders them
    for beta, r in zip(betas, runs):
        assert len(r.history) == 300
        for row in r.history:
            assert row["beta"] == pytest.approx(beta, rel=1e-6)  # logged as float32
            assert row["loss"] == pytest.approx(row["recon"] + beta * row["kl"], rel=1e-5)


def test_members_with_a_capacity_target_dip_or_tc_train_by_their_own_terms():
    """In one group: a plain member (β = 0.1, so its posterior is in use), one with an annealed
    capacity (C: 0 → 6 nats over 200 steps, γ = β = 20), one with DIP-II (λ_od = λ_d = 50) and one
    β-TCVAE (TC weight 5, stratified). Every logged row's loss is that member's own total; the
    capacity member's KL ends near its target; the DIP member's aggregate posterior covariance
    ends nearer the identity, and the β-TCVAE's total correlation far lower (measured: 0.013 nats
    against 0.62), than the plain member's."""
    base = dict(data__n=256, train__steps=300, train__lr=3e-3, loss__beta=0.1)
    configs = [
        cfg(POINTS, **base),
        cfg(POINTS, **{**base, "loss__beta": 20.0}, loss__capacity_max=6.0, loss__capacity_steps=200),
        cfg(POINTS, **base, loss__dip="ii", loss__dip_offdiag=50.0, loss__dip_diag=50.0),
        cfg(POINTS, **base, loss__tc_weight=5.0, loss__tc_estimator="mss"),
    ]
    assert len({group_key(c) for c in configs}) == 1  # they can share a group
    data = load_data(configs[0].data)
    plain, capped, dip, tc = train_group(configs, [data] * 4, [None] * 4, quiet=True)
    for row in capped.history:
        assert row["capacity"] == pytest.approx(6.0 * min(1.0, row["step"] / 200), abs=1e-5)
        assert row["loss"] == pytest.approx(row["recon"] + 20.0 * abs(row["kl"] - row["capacity"]), rel=1e-4, abs=1e-3)
    assert tail_mean(capped.history, "kl") == pytest.approx(6.0, abs=1.0)
    for row in dip.history:
        assert row["loss"] == pytest.approx(row["recon"] + 0.1 * row["kl"] + 50.0 * (row["dip_offdiag"] + row["dip_diag"]), rel=1e-4)
    for row in tc.history:
        assert row["loss"] == pytest.approx(row["recon"] + 0.1 * row["kl"] + 5.0 * row["tc"], rel=1e-4, abs=1e-4)
    for row in plain.history:  # in a group every member computes every term; the plain one weighs them 0
        assert row["capacity"] == 0.0 and row["loss"] == pytest.approx(row["recon"] + 0.1 * row["kl"], rel=1e-5)
    assert tail_mean(tc.history, "tc") < 0.2 * tail_mean(plain.history, "tc")
    penalty = lambda run: tail_mean(run.history, "dip_offdiag") + tail_mean(run.history, "dip_diag")  # noqa: E731
    assert penalty(dip) < 0.5 * penalty(plain)  # its aggregate posterior's covariance ends nearer the identity


# ---------------------------------------------------------------------------------------------
# Divergence


def test_a_diverging_member_is_returned_as_training_diverged_and_the_others_finish(tmp_path):
    """lr = 1e6: Adam's first step moves every weight by about 1e6, so log σ² overflows exp and
    the loss is Inf/NaN at step 1 (reliably: measured on 6 seeds). The other members finish."""
    lrs = [1e-3, 1e6, 2e-3]
    configs = [cfg(POINTS, train__lr=lr, train__seed=i, train__steps=60) for i, lr in enumerate(lrs)]
    datas = [load_data(c.data) for c in configs]
    outs = [tmp_path / f"m{i}" for i in range(3)]
    runs = train_group(configs, datas, outs, quiet=True, finish=False)
    bad = runs[1]
    assert isinstance(bad, TrainingDiverged), bad
    step = int(re.search(r"at step (\d+)", str(bad)).group(1))
    assert re.search(r"diverged at step \d+: the loss is (nan|inf|-inf)", str(bad))
    # its folder keeps the good rows only, and no checkpoint of its NaN weights
    assert [r["step"] for r in read_jsonl(outs[1] / "metrics.jsonl")] == list(range(step))
    assert not (outs[1] / "model.safetensors").exists()
    for i in (0, 2):
        r = runs[i]
        assert isinstance(r, Run)
        assert [row["step"] for row in r.history] == list(range(60))
        assert all(math.isfinite(row["loss"]) for row in r.history)
        assert all(torch.isfinite(p).all() for p in r.model.parameters())
        assert (outs[i] / "model.safetensors").is_file()
        assert r.history[-1]["loss"] < r.history[0]["loss"]


def test_a_nan_member_leaves_the_others_exactly_as_without_it():
    """A member whose images are NaN diverges at step 0; the deterministic (`ae`) members beside
    it end where the same members end in a group without it (NaN does not leak across members).
    On the CPU, where the tolerances were measured."""
    members = [(0, 1e-3), (1, 1e-2), (2, 5e-3)]  # seed, lr
    configs = [cfg(POINTS, model__name="ae", train__steps=30, train__seed=s, data__seed=s, train__lr=lr, train__device="cpu") for s, lr in members]
    datas = [load_data(c.data) for c in configs]
    poisoned = Dataset(torch.full_like(datas[1].images, float("nan")), name="points")
    with_nan = train_group(configs, [datas[0], poisoned, datas[2]], [None] * 3, quiet=True)
    without = train_group([configs[0], configs[2]], [datas[0], datas[2]], [None] * 2, quiet=True)
    assert isinstance(with_nan[1], TrainingDiverged) and "at step 0" in str(with_nan[1])
    for a, b in zip([with_nan[0], with_nan[2]], without):
        assert isinstance(a, Run) and isinstance(b, Run)
        assert [r["loss"] for r in a.history] == pytest.approx([r["loss"] for r in b.history], rel=1e-5)
        assert max_abs_diff(a.model.state_dict(), b.model.state_dict()) < 1e-5


# ---------------------------------------------------------------------------------------------
# group_key


def test_group_key_names_what_members_must_share():
    base = cfg(SQUARES, train__steps=100)
    key = group_key(base)
    assert key is not None
    same = [
        {"loss.beta": 4.0},
        {"loss.recon_weight": 0.5},
        {"loss.variability_weight": 0.3},
        {"train.lr": 0.05},
        {"train.seed": 9},
        {"data.mu": 2.0},
        {"data.seed": 7},
        {"train.epochs": 17},  # ignored once train.steps is set
        {"loss.beta": 2.0, "train.lr": 1e-4, "train.seed": 3, "data.mu": -1.0, "data.seed": 1},
    ]
    for over in same:
        assert group_key(base.override(over)) == key, over
    other = [
        {"model.hidden": [32, 8]},
        {"model.latent_dim": 3},
        {"model.name": "fc1", "model.hidden": [32]},
        {"train.batch_size": 16},
        {"train.steps": 101},
        {"data.n": 128},
        {"loss.kl_schedule": "linear", "loss.warmup_steps": 10},
        {"train.cuda_graph": "off"},
    ]
    for over in other:
        assert group_key(base.override(over)) != key, over
    assert group_key(base.override({"model.batch_norm": True})) is None
    assert group_key(base.override({"train.compile": True})) is None  # compiles a single run's loss: it trains alone
    # epochs count when steps is not set
    by_epochs = cfg(SQUARES, train__epochs=2)
    assert group_key(by_epochs) != group_key(by_epochs.override({"train.epochs": 3}))


def test_train_group_refuses_configs_of_different_groups():
    a = cfg(POINTS, train__steps=5)
    data = load_data(a.data)
    for other in ({"model.hidden": [16, 8]}, {"train.batch_size": 16}, {"train.steps": 6}):
        with pytest.raises(ValueError, match="group_key"):
            train_group([a, a.override(other)], [data, data], [None, None], quiet=True)
    bn = a.override({"model.batch_norm": True})
    with pytest.raises(ValueError, match="group_key"):
        train_group([bn, bn], [data, data], [None, None], quiet=True)
    # same key, other image shape: a UserError naming the shapes
    small = a.override({"data.size": 10})
    assert group_key(small) == group_key(a)
    with pytest.raises(UserError, match="same number and shape"):
        train_group([a, small], [data, load_data(small.data)], [None, None], quiet=True)


# ---------------------------------------------------------------------------------------------
# Run folders


def test_each_member_gets_a_complete_run_folder(tmp_path):
    betas, steps = [0.5, 3.0], 60  # 60 > LOG_EVERY: rows are flushed twice
    configs = [cfg(POINTS, loss__beta=beta, train__seed=i, train__lr=(i + 1) * 1e-3, train__steps=steps) for i, beta in enumerate(betas)]
    datas = [load_data(c.data) for c in configs]
    outs = [tmp_path / "a", tmp_path / "b"]
    runs = train_group(configs, datas, outs, quiet=True)
    for beta, c, d, out, run in zip(betas, configs, datas, outs, runs):
        assert isinstance(run, Run) and run.dir == out
        names = {p.name for p in out.iterdir()}
        assert {"config.toml", "metrics.jsonl", "model.safetensors", "state.safetensors", "samples.png", "reconstructions.png", "report.html"} <= names
        assert not [n for n in names if n.endswith(".tmp")]
        assert read_toml(out / "config.toml")["loss"]["beta"] == beta
        assert read_toml(out / "config.toml") == c.to_dict()  # the member's own config, all of it
        rows = read_jsonl(out / "metrics.jsonl")
        assert [r["step"] for r in rows] == list(range(steps))
        assert rows == run.history
        assert all(r["beta"] == pytest.approx(beta, rel=1e-6) for r in rows)

        loaded_cfg, model = load_run(out)
        assert loaded_cfg.loss.beta == beta and loaded_cfg.train.seed == c.train.seed
        assert max_abs_diff(model.state_dict(), run.model.state_dict()) == 0.0
        _, meta = load_tensors(out / "model.safetensors")
        assert meta["step"] == str(steps) and meta["image_shape"] == ",".join(map(str, d.shape))

        # state.safetensors is a training state `train` can resume from: step, weights, Adam moments
        tensors, _ = load_tensors(out / "state.safetensors")
        assert int(tensors["step"]) == steps
        fresh = build_model(c, d.shape)
        optimizer = torch.optim.Adam(fresh.parameters(), lr=c.train.lr)
        assert load_state(out, optimizer, fresh) == steps
        assert max_abs_diff(fresh.state_dict(), run.model.state_dict()) == 0.0
        moments = [optimizer.state[p] for p in fresh.parameters()]
        assert len(moments) == len(list(fresh.parameters()))
        assert all(float(s["step"]) == steps and s["exp_avg"].shape == p.shape for s, p in zip(moments, fresh.parameters()))
        assert all(torch.isfinite(s["exp_avg_sq"]).all() and (s["exp_avg_sq"] >= 0).all() for s in moments)
        assert any(s["exp_avg_sq"].abs().max() > 0 for s in moments)
    # the two members are different models
    assert max_abs_diff(runs[0].model.state_dict(), runs[1].model.state_dict()) > 1e-3


def test_a_member_given_starting_weights_starts_from_them():
    """`init` replaces a member's fresh initialisation (a chain's fine-tuning): with the deterministic
    `ae` at lr = 1e-12 the loss logged at step 0 is the starting model's loss on the member's first
    batch, and a member given None starts from its seed's initialisation."""
    configs = [cfg(POINTS, model__name="ae", train__steps=2, train__lr=1e-12, train__seed=s, data__seed=s) for s in (0, 1)]
    datas = [load_data(c.data) for c in configs]
    start = fresh_model(configs[0].override({"train.seed": 99}), datas[0].shape)
    runs = train_group(configs, datas, [None, None], quiet=True, init=[start.state_dict(), None])
    for run, c, d, model in zip(runs, configs, datas, (start, fresh_model(configs[1], datas[1].shape))):
        batch = d.images[epoch_order(c.train.seed, 0, len(d))][: c.train.batch_size]
        with torch.no_grad():
            assert run.history[0]["loss"] == pytest.approx(model.loss(batch, 0, loss_weights(c.loss, 0))["loss"].item(), rel=1e-5)
        assert max_abs_diff(run.model.state_dict(), model.state_dict()) < 1e-9
    assert max_abs_diff(runs[0].model.state_dict(), fresh_model(configs[0], datas[0].shape).state_dict()) > 1e-2  # teeth


def test_members_write_their_checkpoints_every_checkpoint_every_steps(tmp_path, monkeypatch):
    """The loop `train` uses: each member's checkpoint is taken every train.checkpoint_every steps
    and written, into its own folder, once the next step's loss is read and finite."""
    from vaelab.checkpoint import Checkpoint

    written = []
    real_write = Checkpoint.write
    monkeypatch.setattr(Checkpoint, "write", lambda self, d: (written.append((d.name, self.step)), real_write(self, d)))
    configs = [cfg(POINTS, train__steps=60, train__checkpoint_every=25, train__seed=s) for s in (0, 1)]
    train_group(configs, [load_data(c.data) for c in configs], [tmp_path / "a", tmp_path / "b"], quiet=True, finish=False)
    assert written == [("a", 25), ("b", 25), ("a", 50), ("b", 50), ("a", 60), ("b", 60)]


def test_a_member_whose_final_weights_give_no_finite_loss_keeps_no_checkpoint(tmp_path):
    """One step at lr = 1e6: the loss logged at step 0 is finite (the initial weights), but Adam's
    step moves every weight by about 1e6 and the final weights give Inf/NaN. That member's last
    checkpoint is not written, as `train` would not write it; the other member's is."""
    configs = [cfg(POINTS, train__lr=lr, train__seed=i, train__steps=1) for i, lr in enumerate((1e-3, 1e6))]
    outs = [tmp_path / "ok", tmp_path / "bad"]
    runs = train_group(configs, [load_data(c.data) for c in configs], outs, quiet=True, finish=False)
    assert isinstance(runs[0], Run) and (outs[0] / "model.safetensors").is_file()
    assert isinstance(runs[1], TrainingDiverged) and "final weights give a non-finite loss" in str(runs[1])
    assert not (outs[1] / "model.safetensors").exists()
    assert [r["step"] for r in read_jsonl(outs[1] / "metrics.jsonl")] == [0]  # its logged step stays
