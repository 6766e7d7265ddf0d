"""Parity of ecgcore.models with the reference implementations (../shared/fixtures).

Every expected tensor of ecgfm_tiny/ and net1d_tiny/ is reproduced to
max|a - e| <= 1e-5 * max(1, max|e|), and the full-size models' state dicts map
exactly (names, shapes, order) onto the released layouts.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ecgcore import models  # noqa: E402
from ecgcore.errors import CheckpointError  # noqa: E402


def assert_close(actual, expected, name):
    a = actual.detach().numpy() if torch.is_tensor(actual) else np.asarray(actual)
    assert a.shape == expected.shape, f"{name}: shape {a.shape} vs {expected.shape}"
    err = float(np.abs(a.astype(np.float64) - expected.astype(np.float64)).max())
    tol = 1e-5 * max(1.0, float(np.abs(expected).max()))
    assert err <= tol, f"{name}: max|a-e| = {err:.3g} > {tol:.3g}"


def _fixture_dir(shared, name):
    d = shared / "fixtures" / name
    if not d.is_dir():
        pytest.skip(f"parity fixture {d} is absent")
    return d


@pytest.fixture(scope="module")
def ecgfm_fx(shared):
    d = _fixture_dir(shared, "ecgfm_tiny")
    return d, torch.from_numpy(np.load(d / "input.npy")), dict(np.load(d / "expected.npz"))


def _hooks(model, names):
    acts, hs = {}, []
    for key, mod in names.items():
        def f(m, i, o, key=key):
            acts[key] = o
        hs.append(model.get_submodule(mod).register_forward_hook(f))
    return acts, hs


ECGFM_HOOKS = {"conv_block_0": "encoder.feature_extractor.conv_layers.0",
               "conv_block_1": "encoder.feature_extractor.conv_layers.1",
               "conv_block_2": "encoder.feature_extractor.conv_layers.2",
               "conv_features": "encoder.feature_extractor",
               "features_layer_norm": "encoder.layer_norm",
               "post_extract_proj": "encoder.post_extract_proj",
               "pos_conv": "encoder.conv_pos",
               "encoder_layer_norm": "encoder.encoder.layer_norm",
               "layer_0": "encoder.encoder.layers.0"}


def test_ecgfm_finetuned_every_intermediate(ecgfm_fx):
    d, x, e = ecgfm_fx
    m = models.create("ecgfm", pretrained=d / "finetuned.pt")
    assert not m.training and m.config["encoder_layers"] == 2 and m.config["num_labels"] == 3
    acts, hs = _hooks(m, ECGFM_HOOKS)
    with torch.no_grad():
        logits = m(x)
    for h in hs:
        h.remove()
    for k in ECGFM_HOOKS:
        assert_close(acts[k], e[k], k)
    assert_close(acts["post_extract_proj"] + acts["pos_conv"], e["encoder_input"], "encoder_input")
    assert_close(logits, e["logits"], "logits")
    with torch.no_grad():
        feats = m.forward_features(x)
    assert_close(feats, e["features"], "features")
    assert_close(m.pool(feats), e["pooled"], "pooled")


def test_ecgfm_padded_batch(ecgfm_fx):
    d, _, e = ecgfm_fx
    m = models.create("ecgfm", pretrained=d / "finetuned.pt")
    xp = torch.from_numpy(e["padded_input"])
    pm = torch.from_numpy(e["padded_source_mask"])
    with torch.no_grad():
        feats, frame_mask = m.encoder(xp, pm)
        logits = m(xp, padding_mask=pm)
    np.testing.assert_array_equal(frame_mask.numpy(), e["padded_frame_mask"])
    assert_close(feats, e["padded_features"], "padded_features")
    assert_close(logits, e["padded_logits"], "padded_logits")


def test_ecgfm_pretrained_file_and_new_weight_norm_names(ecgfm_fx, tmp_path):
    d, x, e = ecgfm_fx
    m = models.create("ecgfm", pretrained=d / "pretrained.pt")
    with torch.no_grad():
        emb = m(x)
        assert_close(m.forward_features(x), e["features"], "features (pretrained file)")
    assert_close(emb, e["pooled"], "embedding")
    # pretraining parameters kept on request: strict round trip of all 55 tensors
    full = models.create("ecgfm", pretrained=d / "pretrained.pt", pretraining_params=True)
    ck = torch.load(d / "pretrained.pt", weights_only=True)
    official = full.official_state_dict(layout="pretrained")
    assert list(official) == list(ck["model"])
    for k, v in ck["model"].items():
        assert torch.equal(official[k], v), k
    # the current parametrized weight-norm spelling loads to the same numbers
    renamed = {k.replace("weight_g", "parametrizations.weight.original0")
                .replace("weight_v", "parametrizations.weight.original1"): v for k, v in ck["model"].items()}
    assert any("original0" in k for k in renamed)
    p = tmp_path / "new_names.pt"
    torch.save({"cfg": ck["cfg"], "model": renamed}, p)
    m2 = models.create("ecgfm", pretrained=p)
    with torch.no_grad():
        assert_close(m2.forward_features(x), e["features"], "features (new weight-norm names)")


def test_ecgfm_dlatcm_path_feeds_pos_conv_alone(ecgfm_fx, tmp_path):
    d, x, e = ecgfm_fx
    m = models.create("ecgfm_dlatcm", pretrained=d / "pretrained.pt")
    assert m.encoder.pos_conv_residual is False and hasattr(m.encoder, "mask_emb")
    seen = {}
    h = m.encoder.encoder.register_forward_pre_hook(lambda mod, args: seen.setdefault("in", args[0]))
    with torch.no_grad():
        out = m(x)
    h.remove()
    assert_close(seen["in"], e["pos_conv"], "DL-AtCM encoder input = positional-conv output")
    assert out.shape == (2, 4)
    # the DL-AtCM state-dict layout (backbone.* + regression_heads.*) round-trips strictly
    sd = {("backbone." + k[len("encoder."):] if k.startswith("encoder.") else k[len("head."):]): v
          for k, v in m.state_dict().items()}
    assert "regression_heads.3.6.weight" in sd and "backbone.quantizer.vars" in sd
    p = tmp_path / "dlatcm.pt"
    torch.save(sd, p)
    tiny = json.loads((d / "config.json").read_text())["pretrained_model"]
    m2 = models.create("ecgfm_dlatcm", pretrained=p, config=tiny)
    with torch.no_grad():
        assert torch.allclose(m2(x), out, atol=0, rtol=0)


@pytest.fixture(scope="module")
def net1d_fx(shared):
    d = _fixture_dir(shared, "net1d_tiny")
    cfg = json.loads((d / "config.json").read_text())
    return d, cfg, torch.from_numpy(np.load(d / "input.npy")), dict(np.load(d / "expected.npz"))


@pytest.mark.parametrize("use_bn", [False, True])
def test_net1d_every_output(net1d_fx, use_bn):
    d, cfg, x, e = net1d_fx
    m = models.create("net1d", pretrained=d / "checkpoint.pth", config=cfg, use_bn=use_bn)
    assert m.head.fc.out_features == 5
    pre = "bn_" if use_bn else "nobn_"
    names = {"stem": "first_activation", **{f"stage_{i}": f"stage_list.{i}" for i in range(4)}}
    acts, hs = _hooks(m, names)
    with torch.no_grad():
        logits = m(x)
    for h in hs:
        h.remove()
    for k in names:
        assert_close(acts[k], e[pre + k], pre + k)
    assert_close(logits, e[pre + "logits"], pre + "logits")
    with torch.no_grad():
        assert_close(m.pool(m.forward_features(x)), e[pre + "features"], pre + "features")
        assert_close(m(x[..., :4999]), e[pre + "odd_len_logits"], pre + "odd_len_logits")


def test_net1d_checkpoint_needs_only_numpy_allow_list(net1d_fx):
    d, cfg, _, _ = net1d_fx
    import pickle
    with pytest.raises(pickle.UnpicklingError):  # the plain safe load refuses the numpy scalar on purpose
        torch.load(d / "checkpoint.pth", weights_only=True)
    ck = models.read_checkpoint(d / "checkpoint.pth")
    assert len(ck["state_dict"]) == 134 and ck["kind"].endswith("/state_dict")


def test_net1d_wrong_config_lists_mis_shaped_keys(net1d_fx):
    d, cfg, _, _ = net1d_fx
    bad = json.loads(json.dumps(cfg))
    bad["net1d_kwargs"]["filter_list"] = [16, 32, 48, 64]
    with pytest.raises(CheckpointError, match="mis-shaped keys: stage_list.2"):
        models.create("net1d", pretrained=d / "checkpoint.pth", config=bad)
    with pytest.raises(CheckpointError, match="missing keys"):  # released defaults: 7 stages
        models.create("net1d", pretrained=d / "checkpoint.pth")


@pytest.fixture(scope="module")
def layouts(shared):
    d = _fixture_dir(shared, "layouts")
    return lambda name: json.loads((d / name).read_text())


def test_full_size_layouts_match_released_files(layouts):
    _layout = layouts
    with torch.device("meta"):
        pre = models.create("ecgfm", pretraining_params=True)
        ft = models.create("ecgfm", num_labels=17)
        n12 = models.create("ecgfounder")
        n1 = models.create("ecgfounder_1lead")
    cases = [(pre.official_state_dict(layout="pretrained"), "ecgfm_pretrained_keys.json"),
             (ft.official_state_dict(layout="finetuned"), "ecgfm_finetuned_keys.json"),
             (n12.official_state_dict(), "ecgfounder_12lead_keys.json"),
             (n1.official_state_dict(), "ecgfounder_1lead_keys.json")]
    for sd, fname in cases:
        lay = _layout(fname)
        assert [(k, list(v.shape)) for k, v in sd.items()] == [(r["name"], r["shape"]) for r in lay["keys"]], fname
        assert [str(v.dtype).replace("torch.", "") for v in sd.values()] == [r["dtype"] for r in lay["keys"]]
    lay = _layout("ecgfm_pretrained_keys.json")
    new = pre.official_state_dict(layout="pretrained", weight_norm="new")
    for old, nw in lay["weight_norm_aliases"].items():
        assert nw in new and old not in new
    assert sum(v.numel() for v in pre.state_dict().values()) == lay["n_values"] == 90_883_072
    assert ft.num_parameters() == _layout("ecgfm_finetuned_keys.json")["n_values"]
    assert n12.num_parameters() == 30_819_014 and n1.num_parameters() == 30_807_750


@pytest.mark.slow
def test_released_layout_file_loads_strictly(tmp_path, layouts):
    """A file with exactly the released names/shapes (random values) loads through create()."""
    lay = layouts("ecgfounder_1lead_keys.json")
    g = torch.Generator().manual_seed(0)
    sd = {r["name"]: (torch.randint(0, 5, r["shape"], generator=g) if r["dtype"] == "int64"
                      else torch.randn(r["shape"], generator=g)) for r in lay["keys"]}
    p = tmp_path / "1_lead_like.pth"
    torch.save({"state_dict": sd, "epoch": 3}, p)
    m = models.create("ecgfounder_1lead", pretrained=p)
    assert m.input_contract["leads"] == 1
    assert torch.equal(m.head.fc.weight, sd["dense.weight"])
    x = torch.randn(1, 1, 5000, generator=g)
    with torch.no_grad():
        assert m(x).shape == (1, 150)
