"""Registry, heads, input contracts, checkpoint safety and the convert-checkpoint command."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ecgcore import models  # noqa: E402
from ecgcore.errors import CheckpointError, ConfigError, PreprocessError  # noqa: E402
from ecgcore.models import heads as H  # noqa: E402

TINY = ["ecgfm_tiny", "net1d_tiny", "fcn_lvh", "fcn_lvh_small", "resnet_1d_tiny", "resnet_tiny", "efficientnet_tiny"]


def _input(model, rng, batch=2):
    c = model.input_contract
    if "channels" in c:
        shape = (batch, c["channels"], 64, 64)
    else:
        shape = (batch, c["leads"], c["samples"] if c.get("fixed_length", True) else 1000)
    return torch.from_numpy(rng.standard_normal(shape).astype(np.float32))


def test_import_ecgcore_does_not_import_torch():
    code = "import sys, ecgcore; ecgcore.__name__; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_registry_lists_every_backbone():
    names = models.list_models()
    for n in ["ecgfm", "ecgfm_dlatcm", "net1d", "ecgfounder", "ecgfounder_1lead", "fcn_lvh", "fcn_lvh_small",
              "resnet34_1d", "resnet18", "resnet34", "resnet50", "resnet34d", "efficientnet_b0"] + TINY:
        assert n in names
    assert models.list_models("resnet*_1d") == ["resnet18_1d", "resnet34_1d"]
    with pytest.raises(ConfigError, match="unknown model"):
        models.create("no_such_net")


@pytest.mark.parametrize("name", TINY)
def test_tiny_models_forward_contract_and_split(name, rng):
    m = models.create(name).eval()
    c = m.input_contract
    assert c["preset"] and ("leads" in c or "channels" in c)
    x = _input(m, rng)
    clinical = None
    if getattr(m.head, "n_clinical", 0):
        clinical = torch.from_numpy(rng.random((2, m.head.n_clinical)).astype(np.float32))
    with torch.no_grad():
        y = m(x, clinical=clinical)
        y2 = m.forward_head(m.forward_features(x), clinical=clinical)
    assert torch.equal(y, y2) and y.shape[0] == 2 and torch.isfinite(y).all()


def test_parameter_counts_match_published_architectures():
    """Counts from the facts (LVH study, ECGFounder) and from torchvision/timm's published models."""
    with torch.device("meta"):
        counts = {n: models.create(n).num_parameters() for n in
                  ["fcn_lvh", "fcn_lvh_small", "resnet34_1d", "resnet18", "resnet34", "resnet50", "efficientnet_b0"]}
        counts["fcn_lvh_nometa"] = models.create("fcn_lvh", n_clinical=0).num_parameters()
        counts["resnet34_1d_nometa"] = models.create("resnet34_1d", n_clinical=0).num_parameters()
    assert counts == {"fcn_lvh": 292_897, "fcn_lvh_small": 9_601, "resnet34_1d": 7_501_217,
                      "fcn_lvh_nometa": 288_513, "resnet34_1d_nometa": 7_221_889,
                      "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
                      "efficientnet_b0": 5_288_548}


def test_image_key_names_follow_torchvision_and_timm():
    with torch.device("meta"):
        r18 = models.create("resnet18").official_state_dict()
        r50 = models.create("resnet50").official_state_dict()
        r34d = models.create("resnet34d").official_state_dict()
        eff = models.create("efficientnet_b0").official_state_dict()
    # torchvision resnet18: 122 entries, first/last names and shapes
    assert len(r18) == 122 and list(r18)[:2] == ["conv1.weight", "bn1.weight"]
    assert tuple(r18["layer2.0.downsample.0.weight"].shape) == (128, 64, 1, 1)
    assert tuple(r18["fc.weight"].shape) == (1000, 512)
    assert len(r50) == 320 and tuple(r50["layer1.0.downsample.0.weight"].shape) == (256, 64, 1, 1)
    assert tuple(r50["layer2.0.conv2.weight"].shape) == (128, 128, 3, 3)
    # timm resnet34d: deep stem conv1.{0,1,3,4,6}, avg-pool shortcut downsample.{1,2}
    for k, shape in [("conv1.0.weight", (32, 3, 3, 3)), ("conv1.1.weight", (32,)), ("conv1.3.weight", (32, 32, 3, 3)),
                     ("conv1.4.weight", (32,)), ("conv1.6.weight", (64, 32, 3, 3)),
                     ("layer2.0.downsample.1.weight", (128, 64, 1, 1)), ("layer2.0.downsample.2.running_var", (128,))]:
        assert tuple(r34d[k].shape) == shape, k
    assert "layer2.0.downsample.0.weight" not in r34d
    # timm efficientnet_b0
    for k, shape in [("conv_stem.weight", (32, 3, 3, 3)), ("blocks.0.0.conv_dw.weight", (32, 1, 3, 3)),
                     ("blocks.0.0.se.conv_reduce.weight", (8, 32, 1, 1)), ("blocks.0.0.conv_pw.weight", (16, 32, 1, 1)),
                     ("blocks.1.0.conv_pw.weight", (96, 16, 1, 1)), ("blocks.1.0.se.conv_reduce.weight", (4, 96, 1, 1)),
                     ("blocks.2.0.conv_dw.weight", (144, 1, 5, 5)), ("blocks.6.0.conv_pwl.weight", (320, 1152, 1, 1)),
                     ("conv_head.weight", (1280, 320, 1, 1)), ("classifier.weight", (1000, 1280))]:
        assert tuple(eff[k].shape) == shape, k


def test_torchvision_style_state_dict_loads_by_name(tmp_path, rng):
    m = models.create("resnet_tiny")
    sd = m.official_state_dict()
    assert "fc.weight" in sd
    p = tmp_path / "tv.pth"
    torch.save({k: v.clone() + 0.01 for k, v in sd.items() if v.is_floating_point()}
               | {k: v for k, v in sd.items() if not v.is_floating_point()}, p)
    m2 = models.create("resnet_tiny", pretrained=p)
    assert torch.allclose(m2.head.fc.weight, m.head.fc.weight + 0.01)


def test_heads_multitask_fusion_and_mlp(rng):
    spec = {"lvh": {"type": "binary"}, "mass": {"type": "regression"}, "hn": {"type": "multiclass", "n": 4}}
    m = models.create("fcn_lvh_small", heads={"type": "multitask", "tasks": spec, "n_clinical": 16})
    x = _input(m, rng)
    clin = torch.from_numpy(rng.random((2, 16)).astype(np.float32))
    out = m(x, clinical=clin)
    assert {k: tuple(v.shape) for k, v in out.items()} == {"lvh": (2, 1), "mass": (2, 1), "hn": (2, 4)}
    inner = m.head.inner
    losses = inner.loss(out, {"lvh": torch.tensor([1.0, 0.0]), "mass": torch.tensor([0.3, -1.0]),
                              "hn": torch.tensor([3, 0])})
    ref = torch.nn.functional.cross_entropy(out["hn"], torch.tensor([3, 0]))
    assert torch.allclose(losses["hn"], ref) and set(losses) == set(spec)
    # late fusion really uses the clinical variables
    assert not torch.allclose(m(x, clinical=clin)["mass"], m(x, clinical=clin + 1)["mass"])
    with pytest.raises(PreprocessError, match="clinical"):
        m(x)
    with pytest.raises(PreprocessError, match=r"\(batch=2, 16\)"):
        m(x, clinical=clin[:, :5])
    # DL-AtCM head: 768 -> 256 -> 128 -> 1 per target, keys {0,3,6}, Xavier weights, zero bias
    h = H.build_head({"type": "mlp_per_target", "n": 4}, 768)
    keys = sorted(h.state_dict())
    assert "regression_heads.3.6.weight" in keys and len(keys) == 24
    assert tuple(h.regression_heads[0][0].weight.shape) == (256, 768)
    assert tuple(h.regression_heads[0][3].weight.shape) == (128, 256)
    assert float(h.regression_heads[0][0].bias.detach().abs().sum()) == 0.0
    z = torch.from_numpy(rng.standard_normal((3, 768)).astype(np.float32))
    h.eval()
    assert torch.allclose(h(z)[:, 2:3], h.regression_heads[2](z))


def test_segment_aggregator(rng):
    v = torch.from_numpy(rng.standard_normal((2, 3, 5)).astype(np.float32))
    mask = torch.tensor([[True, True, False], [True, True, True]])
    mean = H.SegmentAggregator("mean")(v, mask)
    assert torch.allclose(mean[0], v[0, :2].mean(0)) and torch.allclose(mean[1], v[1].mean(0))
    mx = H.SegmentAggregator("max")(v, mask)
    assert torch.allclose(mx[0], v[0, :2].amax(0))
    att = H.SegmentAggregator("attention", in_features=5, hidden=4)
    a = att.weights(v, mask)
    assert torch.allclose(a.sum(1), torch.ones(2)) and a[0, 2].item() == 0.0
    ref = (a.unsqueeze(-1) * v).sum(1)
    assert torch.allclose(att(v, mask), ref, atol=1e-6)


@pytest.mark.parametrize("bad, msg", [
    (lambda x: x[:, :8], "got 8 leads"),
    (lambda x: x[..., :2000], "got 2000 samples"),
    (lambda x: x.masked_fill(torch.arange(x.numel()).reshape(x.shape) == 7, float("nan")), "NaN"),
    (lambda x: x[0], "3 dimensions"),
    (lambda x: x.long(), "dtype"),
])
def test_bad_input_names_the_contract(bad, msg, rng):
    m = models.create("ecgfm_tiny").eval()
    x = _input(m, rng)
    with pytest.raises(PreprocessError, match=msg) as ei:
        m(bad(x))
    assert "12 leads" in str(ei.value) and "500 Hz" in str(ei.value) and "'ecgfm'" in str(ei.value)


def test_bad_image_input(rng):
    m = models.create("resnet_tiny").eval()
    with pytest.raises(PreprocessError, match="expects float images"):
        m(torch.zeros(1, 1, 64, 64))
    with pytest.raises(PreprocessError, match="smaller"):
        m(torch.zeros(1, 3, 8, 8))


def test_save_load_round_trip_and_tampering(tmp_path, rng):
    m = models.create("net1d_tiny", heads={"a": {"type": "binary"}, "b": {"type": "regression"}}).eval()
    p = tmp_path / "m.safetensors"
    models.save(m, p)
    m2 = models.load(p)
    x = _input(m, rng)
    with torch.no_grad():
        a, b = m(x), m2(x)
    assert set(a) == {"a", "b"} and all(torch.equal(a[k], b[k]) for k in a)
    # flip one byte of tensor data: the stored SHA-256 catches it
    raw = bytearray(p.read_bytes())
    raw[-10] ^= 0xFF
    bad = tmp_path / "tampered.safetensors"
    bad.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="modified"):
        models.load(bad)
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes(p.read_bytes()[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        models.load(trunc)
    with pytest.raises(CheckpointError, match="not of the"):
        models.create("ecgfm_tiny", pretrained=p)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_hostile_truncated_and_foreign_torch_files(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "x": _Evil()}, evil)
    with pytest.raises(CheckpointError, match="refused to unpickle"):
        models.create("net1d_tiny", pretrained=evil)
    good = tmp_path / "good.pt"
    torch.save({"state_dict": models.create("net1d_tiny").official_state_dict()}, good)
    blob = good.read_bytes()
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(blob[: len(blob) // 3])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        models.create("net1d_tiny", pretrained=trunc)
    with pytest.raises(CheckpointError, match="looks like a 'net1d' checkpoint"):
        models.create("ecgfm_tiny", pretrained=good)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"hello world, not a checkpoint")
    with pytest.raises(CheckpointError, match="unrecognised"):
        models.create("net1d_tiny", pretrained=junk)
    with pytest.raises(CheckpointError, match="not found"):
        models.create("net1d_tiny", pretrained=tmp_path / "missing.pt")
    # a tampered shape inside an otherwise valid file
    sd = models.create("net1d_tiny").official_state_dict()
    sd["dense.weight"] = torch.zeros(5, 63)
    sd["extra.bias"] = torch.zeros(1)
    p = tmp_path / "shape.pt"
    torch.save(sd, p)
    with pytest.raises(CheckpointError, match=r"1 unexpected keys: extra.bias; 1 mis-shaped keys: head.fc.weight"):
        models.create("net1d_tiny", pretrained=p)


def test_new_head_on_pretrained_backbone(tmp_path, rng):
    base = models.create("net1d_tiny")
    p = tmp_path / "b.pt"
    torch.save({"state_dict": base.official_state_dict()}, p)
    m = models.create("net1d_tiny", pretrained=p, heads=3)
    assert m.head.fc.out_features == 3 and not m.load_report["head_from_file"]
    assert torch.equal(m.first_conv.conv.weight, base.first_conv.conv.weight)


def test_convert_checkpoint_cli(tmp_path, rng):
    from ecgcore.cli import main
    base = models.create("net1d_tiny").eval()
    src = tmp_path / "net.pth"
    torch.save({"state_dict": base.official_state_dict(), "epoch": 1}, src)
    cfg = tmp_path / "cfg.json"
    import json
    cfg.write_text(json.dumps({"net1d_kwargs": {k: base.config[k] for k in
                                                ("base_filters", "filter_list", "m_blocks_list")}}))
    out = tmp_path / "net.safetensors"
    assert main(["convert-checkpoint", str(src), str(out), "--config", str(cfg)]) == 0
    m = models.load(out)
    x = _input(base, rng)
    with torch.no_grad():
        assert torch.equal(m(x), base(x))
    assert main(["convert-checkpoint", str(tmp_path / "nope.pt"), str(out)]) == 1


@pytest.fixture(scope="module")
def train_run(tmp_path_factory):
    """A 1-epoch ``ecgcore train`` run of fcn_lvh_small (two tasks) on 16 simulated records."""
    from ecgcore.models.train import train
    from ecgcore.models.train.config import validate
    cfg = validate({"seed": 3, "threads": 1, "model": {"name": "fcn_lvh_small", "options": {"n_clinical": 0}},
                    "data": {"source": "simulated", "simulate": {"n": 16, "seed": 5}, "batch_size": 8},
                    "tasks": [{"name": "qrs_duration_ms"}, {"name": "tachycardia", "type": "binary"}],
                    "train": {"epochs": 1, "tensorboard": False}, "evaluate": {"n_boot": 10}})
    out = tmp_path_factory.mktemp("ckrun")
    train(cfg, out, progress=False)
    return out


def test_training_checkpoint_loads_as_a_model_and_converts(train_run, tmp_path, rng):
    """best.pt / last.pt of 'ecgcore train' rebuild the trained model (model_spec + model_state) through
    models.create(pretrained=...) and convert-checkpoint, equal to the engine's own inference loader."""
    from ecgcore.cli import main
    from ecgcore.models.train.predict import load_for_inference
    ref, ckd = load_for_inference(train_run / "checkpoints" / "best.pt")
    x = _input(ref, rng, batch=3)
    with torch.no_grad():
        want = ref(x)
    for name in ("best.pt", "last.pt"):
        m = models.create("fcn_lvh_small", pretrained=train_run / "checkpoints" / name)
        assert m.load_report["kind"] == "torch-zip/ecgcore-train" and m.load_report["head_from_file"]
        sd = torch.load(train_run / "checkpoints" / name, weights_only=True)["model_state"]
        assert all(torch.equal(v, sd[k]) for k, v in m.state_dict().items())
    m = models.load(train_run / "checkpoints" / "best.pt")          # the architecture is detected
    with torch.no_grad():
        assert torch.equal(m(x), want)
    out = tmp_path / "best.safetensors"
    assert main(["convert-checkpoint", str(train_run / "checkpoints" / "best.pt"), str(out)]) == 0
    conv = models.load(out)
    with torch.no_grad():
        assert torch.equal(conv(x), want)
    # the same tensors as the run's own best.safetensors
    own = models.load(train_run / "best.safetensors")
    assert all(torch.equal(v, conv.state_dict()[k]) for k, v in own.state_dict().items())
    # a new head on the trained backbone (fine-tuning a follow-up task)
    m3 = models.create("fcn_lvh_small", pretrained=train_run / "checkpoints" / "best.pt", heads=3)
    assert not m3.load_report["head_from_file"]
    assert torch.equal(m3.in1[0].weight, ref.in1[0].weight)
    # a training checkpoint is not one of another family
    with pytest.raises(CheckpointError, match="not of the"):
        models.create("net1d_tiny", pretrained=train_run / "checkpoints" / "best.pt")


def test_training_checkpoint_is_loaded_safely(train_run, tmp_path):
    from ecgcore.models.checkpoint import read_checkpoint
    from ecgcore.cli import main
    ck = torch.load(train_run / "checkpoints" / "best.pt", weights_only=True)
    # an object smuggled into a training checkpoint is never unpickled
    evil = tmp_path / "evil.pt"
    torch.save({**ck, "note": _Evil()}, evil)
    with pytest.raises(CheckpointError, match="refused to unpickle"):
        read_checkpoint(evil)
    assert main(["convert-checkpoint", str(evil), str(tmp_path / "e.safetensors")]) == 1
    assert not (tmp_path / "e.safetensors").exists()
    # attention-pooled runs: the pool is not part of the registry model, refused with the reason
    pooled = tmp_path / "pooled.pt"
    torch.save({**ck, "model_state": {**ck["model_state"], "segment_pool.attn.weight": torch.zeros(1, 4)}},
               pooled)
    with pytest.raises(CheckpointError, match="aggregate: attention"):
        read_checkpoint(pooled)
    # damaged spec / state
    for name, bad, msg in (("nospec.pt", {**ck, "model_spec": None}, "without a model_spec"),
                           ("badstate.pt", {**ck, "model_state": {**ck["model_state"], "x": 1}},
                            "not named tensors"),
                           ("unknown.pt", {**ck, "model_spec": {**ck["model_spec"], "name": "nope"}},
                            "not in the registry")):
        torch.save(bad, tmp_path / name)
        with pytest.raises(CheckpointError, match=msg):
            read_checkpoint(tmp_path / name)


@pytest.mark.slow
def test_forward_has_no_graph_breaks(rng):
    import torch._dynamo as dynamo
    for name in ["ecgfm_tiny", "net1d_tiny", "fcn_lvh_small", "resnet_tiny"]:
        m = models.create(name).eval()
        x = _input(m, rng, batch=1)
        kw = {}
        if getattr(m.head, "n_clinical", 0):
            kw["clinical"] = torch.zeros(1, m.head.n_clinical)
        dynamo.reset()
        exp = dynamo.explain(m)(x, **kw)
        assert exp.graph_break_count == 0, (name, exp.break_reasons)


def test_folded_pos_conv_weight_follows_parameter_updates(rng):
    m = models.create("ecgfm_tiny").eval()
    x = _input(m, rng, batch=1)
    with torch.no_grad():
        a = m(x)
        assert torch.equal(a, m(x))  # cached fold gives the same numbers
        m.encoder.conv_pos.pos_conv[0].weight_g.mul_(2.0)
        b = m(x)
    assert not torch.allclose(a, b)
    with torch.enable_grad():  # training path recomputes the fold with gradients
        assert torch.allclose(m(x), b, atol=1e-6)


def test_fcn_same_padding_equals_torch_same():
    """The FCN pads explicitly (no padded copy, no warning for its even first kernel):
    outputs equal ``nn.Conv1d(padding="same")`` with the same weights, names unchanged."""
    import warnings
    from ecgcore.models.lvh import _SameConv1d
    torch.manual_seed(3)
    for k in (8, 5, 3, 2):
        ref = torch.nn.Conv1d(8, 6, k, padding="same")
        ours = _SameConv1d(8, 6, k)
        ours.load_state_dict(ref.state_dict())            # strict: the same parameter names
        x = torch.randn(2, 8, 101)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            want = ref(x)
        with warnings.catch_warnings():
            warnings.simplefilter("error")                 # ours must not warn
            got = ours(x)
        assert torch.equal(got, want), k
