"""Rebuild benchmarks/RESULTS.md: the summary header plus every results/*.md, in one file.

Each results file records its numbers together with the command that produced them.
Run: python benchmarks/collect_results.py
"""

import glob
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ORDER = ["read_wfdb", "read_xml", "read_hospital_a", "read_hospital_b", "signal", "pipeline",
         "delineate", "models", "train", "stats", "studies", "digitize", "service"]


def main():
    with open(os.path.join(HERE, "SUMMARY.md")) as f:
        parts = [f.read().rstrip() + "\n"]
    files = {os.path.splitext(os.path.basename(p))[0]: p
             for p in glob.glob(os.path.join(HERE, "results", "*.md"))}
    for name in ORDER + sorted(set(files) - set(ORDER)):
        if name in files:
            with open(files[name]) as f:
                body = f.read().strip()
            parts.append(f"\n---\n\n<!-- from results/{name}.md -->\n\n{body}\n")
    tmp = os.path.join(HERE, "RESULTS.md.tmp")
    with open(tmp, "w") as f:
        f.write("\n".join(parts))
    os.replace(tmp, os.path.join(HERE, "RESULTS.md"))


if __name__ == "__main__":
    main()
