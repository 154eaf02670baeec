"""How many released options the answer extraction recognises when a model writes them out.

Also counts the released QA gold answers the two ``evaluation.qa_normalize`` modes tokenise differently.

For every item of XNLI, XStoryCloze and MMMLU in the CC-Tuning release and every
option whose text no other option of the item shares, three outputs are scored: the option's text as listed, the text without
its final punctuation, and that with a capital first letter ("ptosis." ->
"ptosis", "Ptosis"). Each should extract to the option's own label.

    PYTHONPATH=src python benchmarks/released_extraction.py [--extract path/to/extract.py]

``--extract`` scores another version of ``crosstune/evaluate/extract.py`` (e.g.
``git show main:src/crosstune/evaluate/extract.py > /tmp/extract_main.py``).
"""

from __future__ import annotations

import argparse
import importlib.util
import re
from collections import Counter
from pathlib import Path

from crosstune.benchmarks.released import released_items
from crosstune.benchmarks.templates import load_template
from crosstune.evaluate.text import tokens

ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks" / "cc-tuning-eval"
FORMS = ("as listed", "no final punct", "first letter's case changed")


def variants(text: str) -> tuple[str, str, str]:
    bare = re.sub(r"[\s.。!！?？,，;；:：]+$", "", text)
    return text, bare, bare[:1].swapcase() + bare[1:]


def load_extract(path: str | None):
    if path is None:
        from crosstune.evaluate import extract

        return extract.extract_choice
    spec = importlib.util.spec_from_file_location("crosstune.evaluate._extract_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.extract_choice


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--extract", help="another extract.py to score")
    ap.add_argument("--root", default=str(ROOT))
    ap.add_argument("--show", action="store_true", help="print every output not recognised")
    args = ap.parse_args()
    extract_choice = load_extract(args.extract)
    shared = Counter()
    for benchmark in ("xnli", "xstorycloze", "mmmlu"):
        ok, total = Counter(), Counter()
        for lang in load_template(benchmark).languages:
            items, _ = released_items(benchmark, lang, args.root)
            for it in items:
                texts = Counter(o["text"].rstrip(".").lower() for o in it["options"])
                for opt in it["options"]:
                    if texts[opt["text"].rstrip(".").lower()] > 1:
                        shared[benchmark] += 1  # two options with one text: no output can tell them apart
                        continue
                    for form, out in zip(FORMS, variants(opt["text"]), strict=True):
                        if form != FORMS[0] and out == opt["text"]:
                            continue  # the text has no final punctuation to leave out
                        total[form] += 1
                        hit = extract_choice(out, it["options"]) == opt["label"]
                        ok[form] += hit
                        if not hit and args.show:
                            print(f"  {lang} {it['index']} {opt['label']} {out!r} -> {extract_choice(out, it['options'])}")
        print(benchmark, "  ".join(f"{f}: {ok[f]}/{total[f]}" for f in FORMS),
              f"  (options left out, their text shared with another option: {shared[benchmark]})")
    # QA: gold answers whose tokens differ between the two punctuation treatments
    for benchmark in ("xquad", "mkqa"):
        differ = total = 0
        for lang in load_template(benchmark).languages:
            for it in released_items(benchmark, lang, args.root)[0]:
                for gold in [it["answer"]] if isinstance(it["answer"], str) else it["answer"]:
                    total += 1
                    differ += tokens(gold, lang, punctuation="squad") != tokens(gold, lang, punctuation="ours")
        print(f"{benchmark}: {differ}/{total} gold answers tokenised differently by qa_normalize squad and ours")


if __name__ == "__main__":
    main()
