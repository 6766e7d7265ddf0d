"""``ECGClassifier``: predictions and Grad-CAM++ heat maps from any ecgcore checkpoint, for one ECG at a time.

The study's classifier (facts/mtecg.md §8) re-implemented with its bugs fixed:
explicit input dispatch (a path is decided from its bytes: image, PDF or any
signal format; a Record; a Pillow image or an array), age divided by 100 for
the study's clinical models, clinical features required when the model fuses
them, no ImageNet download at load time, probabilities not rounded unless
asked, and any head the checkpoint describes (two-class softmax, one-logit
sigmoid, multiclass, regression).

Result of :meth:`ECGClassifier.predict` for the study's model::

    {"scar": {"prediction": 0, "probability": {"negative": 0.71, "positive": 0.29}},
     "lvef": {"prediction": 1, "probability": {"negative": 0.35, "positive": 0.65}}}

Regression tasks give ``{"value": v}`` in target units; multiclass tasks give
``{"prediction": k, "probability": {"class_0": ..., ...}}``.
"""

from __future__ import annotations

import io
import os
import threading

import numpy as np
import torch

from ecgcore.errors import CheckpointError, ConfigError, PreprocessError

from . import image_model  # noqa: F401  (registers mtecg_image*)
from .image_pipeline import prepare_image

__all__ = ["ECGClassifier", "ExplainResult", "checkpoint_input_kind"]

_IMAGE_OPTIONS = ("crop_box", "grid", "rearrange", "dpi", "render", "size")
_CHECKPOINT_NAMES = ("checkpoints/best.pt", "best.pt", "model.safetensors", "checkpoints/last.pt", "last.pt")


def _find_checkpoint(path: str) -> str:
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise CheckpointError("no such model directory or checkpoint file", path)
    for name in _CHECKPOINT_NAMES:
        p = os.path.join(path, name)
        if os.path.isfile(p):
            return p
    st = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
    if len(st) == 1:
        return os.path.join(path, st[0])
    raise CheckpointError(f"no checkpoint found (looked for {', '.join(_CHECKPOINT_NAMES)} or one "
                          f"*.safetensors file)", path)


def _is_training_checkpoint(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def checkpoint_input_kind(model_dir) -> str:
    """``"image"`` or ``"signal"``: what the model of a run directory or checkpoint file reads.

    Decided from the stored image preset of a training checkpoint (memory-mapped,
    so the weights are not read) or, for a model file, from its input contract.

    Raises
    ------
    CheckpointError
        No checkpoint there, or not a readable one.
    """
    path = _find_checkpoint(os.fspath(model_dir))
    from .train.images import is_image_preset
    if _is_training_checkpoint(path):
        try:
            ck = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # an odd zip: the full loader gives the precise message
            from .train.checkpointing import load_checkpoint
            ck = load_checkpoint(path)
        if not isinstance(ck, dict):
            raise CheckpointError("not an ecgcore training checkpoint", path)
        if is_image_preset(ck.get("preset")):
            return "image"
        spec = ck.get("model_spec") or {}
        try:
            from .registry import model_entry
            fam = model_entry(spec.get("name"))["family"]
        except Exception:  # an unknown model: loading it reports that, with the file named
            return "signal"
        return "image" if fam in ("image", "mtecg_image") else "signal"
    from .checkpoint import load
    return "image" if "channels" in (getattr(load(path), "input_contract", {}) or {}) else "signal"


class ExplainResult(dict):
    """Grad-CAM++ of one input: a dict with attribute access.

    Keys: ``task``, ``target`` (output column explained), ``heatmap`` ((H, W)
    float32 in [0, 1] over the cropped page, the 384-square squash undone),
    ``cam`` (the raw map at feature resolution), ``image`` ((H, W, 3) uint8, the
    cropped page), ``overlay_png`` (PNG bytes of the heat map over the page).
    """

    __getattr__ = dict.__getitem__


class ECGClassifier:
    """Run a trained ecgcore model on single ECGs.

    Parameters
    ----------
    model_dir : str, path-like or torch.nn.Module
        A run directory of ``ecgcore train`` (``checkpoints/best.pt``), a
        training checkpoint ``.pt``, an ecgcore ``.safetensors`` model file (or a
        directory holding ``model.safetensors``), or a model built in-process
        (e.g. ``ecgcore.models.create("mtecg_image")``).
    device : {"cpu", "cuda"}
    round_probabilities : bool
        Round probabilities to 2 decimals (the study's default was True).
    threshold : float or dict
        Probability of the positive class at or above which ``prediction`` is 1
        (default 0.5: the study's argmax); a dict sets it per task.
        ``"checkpoint"`` uses the thresholds a training run chose on validation.
    image_options : dict
        Passed to :func:`ecgcore.models.image_pipeline.prepare_image` (``crop_box``,
        ``grid``, ``rearrange``, ``dpi``, ``render``, ``size``). Defaults: the options
        stored with the image preset of a training checkpoint (how its dataset was
        built, :func:`ecgcore.models.train.images.prepare_options`), else
        ``prepare_image``'s own; options given here override them one by one.
    tasks : list of dict, optional
        Describe the outputs of an in-process model whose head does not:
        ``[{"name": ..., "type": "binary"|"multiclass"|"regression", "n_classes": k}]``.

    Notes
    -----
    One classifier may be shared by threads (the web service's workers): input
    preparation runs in parallel, forward passes and Grad-CAM++ run one at a time.
    """

    def __init__(self, model_dir, device: str = "cpu", round_probabilities: bool = False,
                 threshold=0.5, image_options: dict | None = None, tasks=None):
        if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
            raise ConfigError(f"device must be 'cpu' or 'cuda', not {device!r}")
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError("device='cuda' requested but no CUDA device is available")
        self.device = torch.device(device)
        self.round_probabilities = bool(round_probabilities)
        # one forward pass at a time per classifier: explain() registers a hook on the shared
        # model, and a prediction running meanwhile in another thread (the service's workers)
        # would fire it (RuntimeError, or a heat map of the wrong input)
        self._lock = threading.RLock()
        user_image_options = dict(image_options or {})
        unknown = sorted(set(user_image_options) - set(_IMAGE_OPTIONS))
        if unknown:
            raise ConfigError(f"image_options: unknown option {unknown[0]!r} (known: {', '.join(_IMAGE_OPTIONS)})")
        self.ck = None
        self.source = None
        if isinstance(model_dir, torch.nn.Module):
            self.model = model_dir
        else:
            path = _find_checkpoint(os.fspath(model_dir))
            self.source = path
            if _is_training_checkpoint(path):
                from .train.predict import load_for_inference
                self.model, self.ck = load_for_inference(path, "cpu")
            else:
                from .checkpoint import load
                self.model = load(path)
                # a model file converted from a training run carries its prediction settings
                # (preset, scalers, thresholds, aggregation): use them exactly as the run would
                self.ck = getattr(self.model, "deploy", None)
        self.model.to(self.device).eval()
        self.tasks = self._describe(tasks)
        self.thresholds = self._thresholds(threshold)
        c = getattr(self.model, "input_contract", {}) or {}
        self.is_image = "channels" in c
        self.image_size = (int(c.get("height") or 384), int(c.get("width") or 384))
        self.preset = (self.ck or {}).get("preset") or c.get("preset")
        self.image_options = self._image_defaults()
        self.image_options.update(user_image_options)  # the caller's options win over the checkpoint's
        self.n_clinical = int(getattr(getattr(self.model, "head", None), "n_clinical", 0) or 0)
        self.clinical_cols = list((self.ck or {}).get("clinical_cols") or [])
        if self.n_clinical and not self.clinical_cols and isinstance(self.model, image_model.MTECGImageNet):
            self.clinical_cols = list(image_model.CLINICAL_COLUMNS[:self.n_clinical])

    def __getstate__(self):  # a lock cannot be pickled (process pools, joblib): drop it ...
        state = dict(self.__dict__)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state):  # ... and give the copy its own
        self.__dict__.update(state)
        self._lock = threading.RLock()

    # -- description ----------------------------------------------------------------------
    def _describe(self, tasks):
        if tasks is not None:
            return [self._norm_task(t) for t in tasks]
        if self.ck is not None:
            return [self._norm_task(t) for t in self.ck["config"]["tasks"]]
        head = getattr(self.model, "head", None)
        inner = getattr(head, "inner", head)  # LateFusionHead wraps the real head
        t = getattr(inner, "tasks", None)
        if isinstance(t, dict) and t:
            out = []
            for name, v in t.items():
                if isinstance(v, dict):  # MultiTaskHead: {"type", "n"}
                    out.append(self._norm_task({"name": name, "type": v["type"], "n_classes": v["n"]}))
                else:                    # MTECGHead: n classes
                    out.append(self._norm_task({"name": name, "type": "multiclass" if v > 1 else "binary",
                                                "n_classes": max(int(v), 2)}))
            return out
        return None  # a plain tensor output: described from its width on first use

    @staticmethod
    def _norm_task(t) -> dict:
        if not isinstance(t, dict) or "name" not in t:
            raise ConfigError(f"a task description needs at least a name, got {t!r}")
        kind = t.get("type", "binary")
        if kind not in ("binary", "multiclass", "regression"):
            raise ConfigError(f"task {t['name']!r}: type must be binary, multiclass or regression")
        n = 1 if kind in ("binary", "regression") else int(t.get("n_classes", 2))
        return {"name": str(t["name"]), "type": kind, "n": n, "labels": t.get("labels")}

    def _image_defaults(self) -> dict:
        """prepare_image options a training checkpoint stored with its image preset (crop, grid,
        rearrangement, PDF dpi, drawing of signals, size): the model then sees at prediction time
        the very preprocessing it was trained on, without the caller repeating it."""
        from .train.images import is_image_preset, prepare_options
        if not self.is_image or not is_image_preset(self.preset):
            return {}
        opts = prepare_options(self.preset)
        if opts["render"] is None:
            opts.pop("render")
        return opts

    def _thresholds(self, threshold) -> dict:
        if threshold == "checkpoint":
            return dict((self.ck or {}).get("thresholds") or {})
        if isinstance(threshold, dict):
            return {str(k): float(v) for k, v in threshold.items()}
        thr = float(threshold)
        if not 0.0 <= thr <= 1.0:
            raise ConfigError(f"threshold must be within [0, 1], got {thr}")
        return {"*": thr}

    def describe(self) -> dict:
        """What the classifier loaded: model name, input kind, tasks, clinical columns."""
        return {"model": getattr(self.model, "model_name", type(self.model).__name__),
                "source": os.path.basename(self.source) if self.source else None,
                "input": "image" if self.is_image else "signal",
                "image_size": list(self.image_size) if self.is_image else None,
                "preset": self.preset if isinstance(self.preset, (str, type(None))) else self.preset.get("name"),
                "tasks": [{k: t[k] for k in ("name", "type", "n")} for t in (self.tasks or [])],
                "clinical": self.clinical_cols}

    # -- inputs -----------------------------------------------------------------------------
    def prepare(self, x):
        """The model input of one image model input (reuse it for predict and explain)."""
        if not self.is_image:
            raise ConfigError("prepare() is for image models")
        return self._image_input(x)

    def _image_input(self, x):
        opts = dict(self.image_options)
        size = opts.pop("size", self.image_size[0])
        return prepare_image(x, size=size, **opts)

    def _signal_input(self, x) -> np.ndarray:
        import ecgcore
        rec = x if isinstance(x, ecgcore.Record) else ecgcore.read(x) \
            if isinstance(x, (str, os.PathLike)) else None
        if rec is None:
            raise PreprocessError(f"this model reads signals: pass a file path or an ecgcore.Record, "
                                  f"not {type(x).__name__}")
        if self.preset is None:
            raise ConfigError("the model names no preprocessing preset; cannot prepare a signal for it")
        segs = ecgcore.preprocess(rec, self.preset)
        if len(segs) == 0:
            raise PreprocessError("the record gives no complete segment for this model's preset", rec.source)
        return np.asarray(segs, np.float32)

    def _clinical_values(self, clinical):
        """The caller's clinical features as a float64 row in the model's column order.

        None when the model fuses none. A dict is checked for every column the model
        needs (None values become NaN); anything else is taken as already ordered.
        """
        if not self.n_clinical:
            if clinical is not None:
                raise PreprocessError("clinical features were given but the model fuses none")
            return None
        if clinical is None:
            cols = ", ".join(self.clinical_cols) or f"{self.n_clinical} values"
            raise PreprocessError(f"this model fuses clinical features; pass clinical={{{cols}}}")
        if isinstance(clinical, dict):
            missing = [c for c in self.clinical_cols if c not in clinical]
            if missing:
                raise PreprocessError(f"clinical features lack {', '.join(missing)} "
                                      f"(need {', '.join(self.clinical_cols)})")
            return np.array([float(clinical[c]) if clinical[c] is not None else np.nan
                             for c in self.clinical_cols], np.float64)
        return np.asarray(clinical, np.float64).reshape(-1)

    def _clinical(self, clinical, n: int):
        row = self._clinical_values(clinical)
        if row is None:
            return None
        if isinstance(clinical, dict):
            if self.ck is not None and self.ck.get("clinical_scaler"):
                from .train.data import ClinicalScaler
                row = ClinicalScaler.from_state(self.ck["clinical_scaler"]).transform(row[None])[0]
            elif self.clinical_cols and self.clinical_cols[0] == "age":
                row[0] = row[0] / 100.0  # the study trained on age / 100 (its predict() forgot)
        if row.shape[0] != self.n_clinical:
            raise PreprocessError(f"the model fuses {self.n_clinical} clinical values, got {row.shape[0]}")
        if not np.isfinite(row).all():
            raise PreprocessError("clinical features contain missing or non-finite values")
        return torch.as_tensor(np.repeat(row[None].astype(np.float32), n, axis=0), device=self.device)

    # -- outputs -----------------------------------------------------------------------------
    def _blocks(self, out) -> dict:
        """Raw model output -> {task: (batch, n) float64 array}."""
        if self.tasks is None:  # plain tensor head: one task named "output"
            o = out if not isinstance(out, dict) else None
            if o is None:
                raise ConfigError("cannot describe this model's outputs; pass tasks=")
            n = o.shape[1] if o.ndim == 2 else 1
            self.tasks = [self._norm_task({"name": "output", "type": "binary" if n == 1 else "multiclass",
                                           "n_classes": max(n, 2)})]
        res = {}
        if isinstance(out, dict):
            for t in self.tasks:
                if t["name"] not in out:
                    raise ConfigError(f"the model has no output named {t['name']!r}")
                res[t["name"]] = out[t["name"]].detach().float().cpu().numpy().reshape(out[t["name"]].shape[0], -1)
            return res
        o = out.detach().float().cpu().numpy()
        o = o.reshape(o.shape[0], -1)
        start = 0
        for t in self.tasks:
            res[t["name"]] = o[:, start:start + t["n"]]
            start += t["n"]
        if start != o.shape[1]:
            raise ConfigError(f"the model gives {o.shape[1]} outputs but the tasks describe {start}")
        return res

    def _decode(self, name: str, v: np.ndarray, task: dict) -> dict:
        """One record's output block (averaged over segments when there are several) -> result dict."""
        kind = task["type"]
        if kind == "regression":
            value = float(v.mean(0)[0])
            if self.ck is not None and self.ck.get("target_scaler"):
                j = [t["name"] for t in self.tasks].index(name)
                value = value * float(self.ck["target_scaler"]["std"][j]) + float(self.ck["target_scaler"]["mean"][j])
            return {"value": value}
        if kind == "binary":
            p1 = float((1.0 / (1.0 + np.exp(-v[:, 0].astype(np.float64)))).mean())
            p = np.array([1.0 - p1, p1])
        else:
            v = v.astype(np.float64)
            e = np.exp(v - v.max(1, keepdims=True))
            p = (e / e.sum(1, keepdims=True)).mean(0)
        return self._from_probabilities(name, p, task)

    def _from_probabilities(self, name: str, p: np.ndarray, task: dict) -> dict:
        """Class probabilities of one record -> the study's result dict."""
        if len(p) == 2:
            thr = self.thresholds.get(name, self.thresholds.get("*", 0.5))
            p1 = float(p[1])
            pred = int(p1 >= thr) if thr != 0.5 else int(np.argmax(p))
            if self.round_probabilities:
                p1 = round(p1, 2)
                probs = {"negative": round(1.0 - p1, 2), "positive": p1}
            else:
                probs = {"negative": 1.0 - p1, "positive": p1}
            return {"prediction": pred, "probability": probs}
        labels = task.get("labels") or [f"class_{k}" for k in range(len(p))]
        probs = {str(lab): (round(float(q), 2) if self.round_probabilities else float(q))
                 for lab, q in zip(labels, p)}
        return {"prediction": int(np.argmax(p)), "probability": probs}

    # -- public -------------------------------------------------------------------------------
    def _forward(self, xb, clinical):
        with self._lock, torch.no_grad():
            return self.model(xb, clinical=clinical) if clinical is not None else self.model(xb)

    def predict(self, x, clinical=None):
        """Predict one ECG (or a list of them: a list of results).

        Parameters
        ----------
        x : path, Record, Pillow image, ndarray, or a list of them
            An image or PDF path (decided from the bytes), any signal file, a Record,
            or an image array. Image models draw signal inputs with ecgcore.plot;
            signal models digitise image inputs with ecgcore.read.
        clinical : dict, optional
            For models that fuse clinical variables: ``{"age": years, "female_gender": 0/1,
            "dm", "ht", "smoke", "dlp"}`` for the study's model (age is divided by 100
            here), or the training run's clinical columns.
        """
        if isinstance(x, list):
            return self.predict_batch(x, clinical=clinical)
        return self.predict_batch([x], clinical=clinical)[0]

    def predict_batch(self, xs, clinical=None, batch_size: int = 16) -> list:
        """Predictions for a list of inputs (image models run in batches)."""
        results = []
        if self.is_image:
            for s in range(0, len(xs), batch_size):
                chunk = xs[s:s + batch_size]
                xb = torch.as_tensor(np.stack([self._image_input(x).tensor for x in chunk]), device=self.device)
                blocks = self._blocks(self._forward(xb, self._clinical(clinical, len(chunk))))
                for i in range(len(chunk)):
                    results.append({t["name"]: self._decode(t["name"], blocks[t["name"]][i:i + 1], t)
                                    for t in self.tasks})
            return results
        if self.ck is not None:
            return [self._predict_training_record(self._signal_input(x), clinical) for x in xs]
        for x in xs:
            segs = self._signal_input(x)
            outs = []
            for s in range(0, len(segs), batch_size):
                xb = torch.as_tensor(segs[s:s + batch_size], device=self.device)
                outs.append(self._blocks(self._forward(xb, self._clinical(clinical, len(xb)))))
            blocks = {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
            results.append({t["name"]: self._decode(t["name"], blocks[t["name"]], t) for t in self.tasks})
        return results

    def _predict_training_record(self, segs: np.ndarray, clinical) -> dict:
        """One record through the training checkpoint's own aggregation (mean, max or attention).

        Going through :func:`predict_records` keeps the classifier equal to ``ecgcore predict``
        and ``ecgcore evaluate``; averaging per-segment outputs here would skip an attention
        pool and ignore ``data.aggregate: max``.
        """
        from .train.predict import predict_records
        row = self._clinical_values(clinical)   # predict_records applies the stored scaler
        raw = None if row is None else row.reshape(1, -1)
        with self._lock:
            out = predict_records(self.model, self.ck, [segs], clinical=raw, device=self.device)
        res = {}
        for t in self.tasks:
            v = np.asarray(out[t["name"]], np.float64)[0]
            if t["type"] == "regression":
                res[t["name"]] = {"value": float(v)}
            elif t["type"] == "binary":
                res[t["name"]] = self._from_probabilities(t["name"], np.array([1.0 - float(v), float(v)]), t)
            else:
                res[t["name"]] = self._from_probabilities(t["name"], np.asarray(v).reshape(-1), t)
        return res

    def predict_table(self, inputs, batch_size: int = 16, clinical=None) -> tuple[list, list]:
        """Predictions of many inputs as CSV-ready rows, with the failures kept apart.

        The layout of ``ecgcore predict`` for signal checkpoints: ``path``,
        ``n_segments`` (1: a page is one input), then per task ``<task>_p<k>``
        (multiclass probabilities), ``<task>_prob`` and, when the checkpoint
        chose a threshold on validation, ``<task>_pred`` (binary), or ``<task>``
        (regression, in target units).

        Parameters
        ----------
        inputs : list of path, Record, image
            As :meth:`predict`; a ``file::record`` address of a multi-record
            container is read with :func:`ecgcore.read`.
        batch_size : int
            Images per forward pass.
        clinical : dict, optional
            For models that fuse clinical variables: the input's row name (its
            path as given, or a Record's ``source``) -> its features, a dict as
            for :meth:`predict`. An input without an entry is a failure.

        Returns
        -------
        rows : list of dict
            One per input that worked, in input order.
        failures : list of (str, str)
            (input, message) for inputs that could not be read or prepared.
        """
        import ecgcore
        if self.n_clinical and clinical is None:
            raise ConfigError(f"this model fuses {self.n_clinical} clinical variables "
                              f"({', '.join(self.clinical_cols)}): give them per input (clinical=, or "
                              f"ecgcore predict --clinical CSV)")
        if clinical is not None and not self.n_clinical:
            raise ConfigError("this model fuses no clinical variables: leave out the clinical table")
        if batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {batch_size}")
        rows, failures, pend = [], [], []

        def flush():
            if not pend:
                return
            xb = torch.as_tensor(np.stack([t for _, t, _ in pend]), device=self.device)
            cb = torch.cat([c for _, _, c in pend]) if self.n_clinical else None
            blocks = self._blocks(self._forward(xb, cb))
            for i, (name, _, _) in enumerate(pend):
                row = {"path": name, "n_segments": 1}
                for t in self.tasks:
                    row.update(self._columns(t, blocks[t["name"]][i]))
                rows.append(row)
            pend.clear()

        for x in inputs:
            name = os.fspath(x) if isinstance(x, (str, os.PathLike)) else str(
                getattr(x, "source", None) or type(x).__name__)
            try:
                c1 = None
                if self.n_clinical:
                    if clinical.get(name) is None:
                        raise PreprocessError("no clinical features for this input")
                    c1 = self._clinical(clinical[name], 1)
                if isinstance(x, str) and "::" in x and not os.path.exists(x):
                    x = ecgcore.read(x)
                if self.is_image:
                    t = self._image_input(x).tensor
                else:
                    segs = self._signal_input(x)
                    flush()
                    outs = [self._blocks(self._forward(
                        torch.as_tensor(segs[s:s + batch_size], device=self.device),
                        None if c1 is None else c1.expand(len(segs[s:s + batch_size]), -1)))
                        for s in range(0, len(segs), batch_size)]
                    row = {"path": name, "n_segments": len(segs)}
                    for tk in self.tasks:
                        v = np.concatenate([o[tk["name"]] for o in outs])
                        row.update(self._columns(tk, v))
                    rows.append(row)
                    continue
            except (ValueError, OSError) as exc:   # ecgcore errors are ValueErrors
                failures.append((name, str(exc)))
                continue
            pend.append((name, t, c1))
            if len(pend) >= batch_size:
                flush()
        flush()
        return rows, failures

    def _columns(self, task: dict, v: np.ndarray) -> dict:
        """CSV columns of one input's raw outputs (rows: segments, averaged) for one task."""
        v = np.asarray(v, np.float64).reshape(-1, task["n"])
        name = task["name"]
        if task["type"] == "regression":
            val = float(v[:, 0].mean())
            if self.ck is not None and self.ck.get("target_scaler"):
                j = [t["name"] for t in self.tasks].index(name)
                val = val * float(self.ck["target_scaler"]["std"][j]) + float(self.ck["target_scaler"]["mean"][j])
            return {name: val}
        if task["type"] == "binary":
            p = float((1.0 / (1.0 + np.exp(-v[:, 0]))).mean())
            out = {f"{name}_prob": p}
            thr = ((self.ck or {}).get("thresholds") or {}).get(name)
            if thr is not None:
                out[f"{name}_pred"] = int(p >= thr)
            return out
        e = np.exp(v - v.max(1, keepdims=True))
        p = (e / e.sum(1, keepdims=True)).mean(0)
        return {f"{name}_p{k}": float(q) for k, q in enumerate(p)}

    def explain(self, x, task: str | None = None, clinical=None, target_class: int = 1,
                alpha: float = 0.45) -> ExplainResult:
        """Grad-CAM++ heat map of one image input for one task's positive class.

        Parameters
        ----------
        x : see :meth:`predict`
        task : str, optional
            Which task to explain (default: the first).
        target_class : int
            Class whose logit is explained (1 = positive). One-logit tasks use the logit.
        alpha : float
            Opacity of the heat map in the overlay.
        """
        if not self.is_image:
            raise ConfigError("explain() draws heat maps over images; this model reads signals "
                              "(use ecgcore.models.explain.grad_cam_pp on its input directly)")
        from .explain import grad_cam_pp
        prep = self._image_input(x)
        xb = torch.as_tensor(prep.tensor[None], device=self.device)
        c = self._clinical(clinical, 1)
        if self.tasks is None:
            self._blocks(self._forward(xb, c))
        names = [t["name"] for t in self.tasks]
        task = task or names[0]
        if task not in names:
            raise ConfigError(f"no task {task!r}; the model predicts {', '.join(names)}")
        t = self.tasks[names.index(task)]
        if t["type"] == "regression" or t["n"] == 1:
            col = 0
        else:
            if not 0 <= target_class < t["n"]:
                raise ConfigError(f"target_class must be in 0..{t['n'] - 1}")
            col = target_class
        probe = self._forward(xb, c)
        if isinstance(probe, dict):
            target = (task, col)
        else:
            target = sum(u["n"] for u in self.tasks[:names.index(task)]) + col
        kw = {"clinical": c} if c is not None else {}
        with self._lock:  # Grad-CAM++ hooks the shared model: no other forward may run meanwhile
            cam = grad_cam_pp(self.model, xb, target=target, upsample=False, **kw)[0]
        # undo the square squash: resample the map onto the cropped page
        h, w = prep.image.shape[:2]
        heat = torch.nn.functional.interpolate(cam[None, None].float(), size=(h, w), mode="bilinear",
                                               align_corners=False)[0, 0].cpu().numpy()
        top = float(heat.max())
        heat = np.clip(heat / top, 0.0, 1.0).astype(np.float32) if top > 0 else np.zeros((h, w), np.float32)
        return ExplainResult(task=task, target=col, heatmap=heat, cam=cam.cpu().numpy(), image=prep.image,
                             overlay_png=overlay_png(prep.image, heat, alpha))


def overlay_png(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45, max_side: int = 1600) -> bytes:
    """PNG bytes of ``heat`` ([0, 1], jet colour map) blended over ``image`` (RGB uint8)."""
    from matplotlib import colormaps
    from PIL import Image
    h, w = heat.shape
    if max(h, w) > max_side:  # colour and blend at display size, not at 300-dpi page size
        s = max_side / max(h, w)
        size = (max(1, int(w * s)), max(1, int(h * s)))
        image = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
        heat = np.asarray(Image.fromarray(heat.astype(np.float32), mode="F").resize(size, Image.BILINEAR))
    colours = (colormaps["jet"](np.clip(heat, 0, 1))[:, :, :3] * 255.0).astype(np.float32)
    a = (alpha * np.clip(heat, 0, 1))[:, :, None]  # cold regions stay readable
    out = np.clip(image.astype(np.float32) * (1 - a) + colours * a, 0, 255).astype(np.uint8)
    img = Image.fromarray(out)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()
