"""Small benchmark item files in the schema of rule benchmark_data, written for the eval tests."""

from __future__ import annotations

import json
from pathlib import Path

NLI_OPTIONS = {
    "en": ["entailment", "neutral", "contradiction"],
    "zh": ["蕴涵", "中立", "矛盾"],
    "ar": ["يستلزم", "محايد", "يتناقض"],
}
NLI = {  # (premise, hypothesis, gold label) per language; index = position
    "en": [("The cat sleeps on the sofa.", "An animal is resting.", "1"),
           ("He bought bread.", "He bought it yesterday.", "2"),
           ("The shop is closed.", "The shop is open.", "3")],
    "zh": [("猫在沙发上睡觉。", "一只动物在休息。", "1"),
           ("他买了面包。", "他昨天买的。", "2"),
           ("商店关门了。", "商店开着。", "3")],
    "ar": [("القطة تنام على الأريكة.", "حيوان يستريح.", "1"),
           ("اشترى خبزا.", "اشتراه أمس.", "2"),
           ("المتجر مغلق.", "المتجر مفتوح.", "3")],
}  # fmt: skip
QA = {  # (question, context, gold)
    "en": [("How many points did the defence allow?", "The defence allowed 308 points.", "308"),
           ("What is the capital of Egypt?", "Cairo is the capital of Egypt.", "Cairo")],
    "zh": [("防守丢了多少分？", "防守只丢了308分。", "308"),
           ("埃及的首都是哪里？", "开罗是埃及的首都。", "开罗")],
    "ar": [("كم نقطة سمح بها الدفاع؟", "سمح الدفاع بـ 308 نقاط.", "308"),
           ("ما هي عاصمة مصر؟", "القاهرة هي عاصمة مصر.", "القاهرة")],
}  # fmt: skip
SUMMARY = {
    "en": [("The council met on Monday and voted to close the bridge for repairs.", "The bridge will close for repairs.")],
    "zh": [("市议会周一开会，投票决定关闭大桥进行维修。", "大桥将关闭维修。")],
    "ar": [("اجتمع المجلس يوم الاثنين وصوت على إغلاق الجسر للإصلاح.", "سيغلق الجسر للإصلاح.")],
}  # fmt: skip


def nli_items(lang: str) -> list[dict]:
    opts = NLI_OPTIONS[lang]
    return [
        {"id": f"xnli/{lang}/{i:04d}", "benchmark": "xnli", "lang": lang, "index": i, "task": "multiple_choice",
         "prompt": f"{p}\n{h}\n\n" + "\n".join(f"({k + 1}) {o}" for k, o in enumerate(opts)),
         "prompt_en": None, "options": [{"label": str(k + 1), "text": o} for k, o in enumerate(opts)],
         "answer": gold}
        for i, (p, h, gold) in enumerate(NLI[lang])
    ]  # fmt: skip


def qa_items(lang: str, benchmark: str = "xquad") -> list[dict]:
    task = "extractive_qa" if benchmark == "xquad" else "open_qa"
    return [
        {"id": f"{benchmark}/{lang}/{i:04d}", "benchmark": benchmark, "lang": lang, "index": i, "task": task,
         "prompt": f"{c}\n{q}", "prompt_en": None, "options": None,
         "answer": gold if task == "extractive_qa" else [gold]}
        for i, (q, c, gold) in enumerate(QA[lang])
    ]  # fmt: skip


def summary_items(lang: str) -> list[dict]:
    return [
        {"id": f"xlsum/{lang}/{i:04d}", "benchmark": "xlsum", "lang": lang, "index": i, "task": "summarisation",
         "prompt": f"Summarise: {text}", "prompt_en": None, "options": None, "answer": ref}
        for i, (text, ref) in enumerate(SUMMARY[lang])
    ]  # fmt: skip


MAKERS = {"xnli": nli_items, "xquad": qa_items, "mkqa": lambda lang: qa_items(lang, "mkqa"), "xlsum": summary_items}


def write_items(root: Path, benchmark: str, langs=("en", "zh", "ar")) -> dict[str, Path]:
    """``root/results/benchmarks/{benchmark}/{lang}.jsonl`` for each language; returns the paths."""
    paths = {}
    for lang in langs:
        path = root / "results" / "benchmarks" / benchmark / f"{lang}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in MAKERS[benchmark](lang)))
        paths[lang] = path
    return paths
