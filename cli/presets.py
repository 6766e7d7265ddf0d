"""``ecgcore presets [NAME | FILE.yaml] [--json]``: list the preprocessing presets, or show one in full."""

from __future__ import annotations

import json
import sys


def add_parser(sub):
    p = sub.add_parser("presets", help="list preprocessing presets", description=__doc__)
    p.add_argument("name", nargs="?", help="show one preset in full (a name or a YAML file)")
    p.add_argument("--json", action="store_true", help="print JSON")
    return p


def _shape(shape) -> str:
    n, leads, length = shape
    return f"({'n' if n is None else n}, {leads}, {'T' if length is None else length})"


def run(args) -> int:
    from ecgcore import presets
    from ecgcore.errors import ConfigError

    try:
        if args.name:
            p = presets.get_preset(args.name)
            if args.json:
                print(json.dumps({**p, "output_shape": list(presets.output_shape(p))}, indent=2))
            else:
                print(f"{p['name']}: {p['description']}")
                print(f"  output   {_shape(presets.output_shape(p))} {p['output_dtype']}")
                print(f"  leads    {' '.join(p['leads'])} (missing: {p['missing_leads']})")
                for i, s in enumerate(p["steps"]):
                    args_ = ", ".join(f"{k}={v}" for k, v in s.items() if k != "op")
                    print(f"  step {i}   {s['op']}({args_})")
                if p["reference"]:
                    print(f"  source   {p['reference']}")
                if p["notes"]:
                    print(f"  notes    {p['notes']}")
            return 0
        rows = []
        for name in presets.list_presets():
            p = presets.get_preset(name)
            rows.append({"name": name, "output_shape": list(presets.output_shape(p)),
                         "steps": [s["op"] for s in p["steps"]],
                         "description": p["description"]})
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            print(f"{r['name']:<{width}}  {_shape(r['output_shape']):<16} "
                  f"{' -> '.join(r['steps'])}")
        return 0
    except ConfigError as exc:
        print(f"ecgcore presets: {exc}", file=sys.stderr)
        return 2
