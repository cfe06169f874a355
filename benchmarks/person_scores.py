"""Person scores and open-set thresholds on LFW, AT&T and Yale: what ``facesys eval identify`` reports for
each ``--score`` (and with ``--flip``), every variant on the same split and the same embeddings.

    python benchmarks/person_scores.py            # ~8 min on 2 cores (LFW: 3,369 photos, twice with --flip)

Protocol (eval identify's defaults): people with at least 5 photos; a seeded half is never enrolled
(up to 10 photos each are stranger probes); the others enroll their first 2 photos and up to 10 more are
genuine probes. LFW's labelled person is the face nearest the centre, AT&T's and Yale's the largest.
Reported per variant: rank-1, DIR at FPIR 1% (threshold-free: the threshold is set on the strangers),
and at the two thresholds facesys can use without seeing the strangers: the model's table alone (what
facesys did before) and the default (the stricter of the table and the gallery's own calibration):
strangers rejected and genuine probes named correctly.
Writes benchmarks/results/person_scores.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, RESULTS

from facesys.config import PERSON_SCORES
from facesys.decide.match import ThresholdPolicy
from facesys.evaluate.experiments import EmbeddingCache, evaluate_identification, split_identification
from facesys.vision.embed import Embedder

SETS = {"LFW": ("lfw", "center"), "AT&T": ("att_faces", "largest"), "Yale": ("yalefaces", "largest")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    args = parser.parse_args()
    embedders = {flip: Embedder("dlib-resnet", flip=flip, detector="mtcnn") for flip in (False, True)}  # as published
    spec = embedders[False].spec
    policy = ThresholdPolicy(None, {}, spec.threshold, spec.far_table)
    rows = []
    for name in args.sets:
        folder, face = SETS[name]
        split = split_identification(DATA / folder, 2, 5, 10, 0.5, 0)
        for flip, embedder in embedders.items():
            cache = EmbeddingCache(embedder, face=face)
            for score in PERSON_SCORES if not flip else ("template", "nearest"):
                r = evaluate_identification(cache, split, policy, score)
                rows.append({"set": name, "score": score + (" + flip" if flip else ""), **r})
                print(name, rows[-1]["score"], round(r["dir_at_fpir"]["0.01"]["dir"], 4), flush=True)
    header = "| set | person score | rank-1 | DIR @ FPIR 1% | model table: rejected / named "
    header += "| default: threshold (source) | rejected | named |"
    print("\n" + header + "\n|---|---|---:|---:|---:|---|---:|---:|")
    for r in rows:
        print(
            f"| {r['set']} | {r['score']} | {100 * r['rank1']:.2f}% | {100 * r['dir_at_fpir']['0.01']['dir']:.2f}% | "
            f"{100 * r['model_table_unknown_rejected']:.2f}% / {100 * r['model_table_named_correctly']:.2f}% | "
            f"{r['default_threshold']:.3f} ({r['default_threshold_source']}) | {100 * r['default_unknown_rejected']:.2f}% | "
            f"{100 * r['default_named_correctly']:.2f}% |"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "person_scores.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
