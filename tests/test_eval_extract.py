"""Answer extraction on outputs as instruction-tuned models write them, in several languages."""

from __future__ import annotations

import pytest

from crosstune.evaluate.extract import extract_choice

NLI_ZH = [{"label": "1", "text": "蕴涵"}, {"label": "2", "text": "中立"}, {"label": "3", "text": "矛盾"}]
NLI_AR = [{"label": "1", "text": "يستلزم"}, {"label": "2", "text": "محايد"}, {"label": "3", "text": "يتناقض"}]
NLI_EN = [{"label": "1", "text": "entailment"}, {"label": "2", "text": "neutral"}, {"label": "3", "text": "contradiction"}]
NLI_HI = [{"label": "1", "text": "निहित"}, {"label": "2", "text": "तटस्थ"}, {"label": "3", "text": "विरोधाभास"}]
MMLU = [{"label": "A", "text": "0"}, {"label": "B", "text": "4"}, {"label": "C", "text": "2"}, {"label": "D", "text": "6"}]
STORY_SW = [{"label": "1", "text": "Ninafikiria Law and Order ni mbaya."}, {"label": "2", "text": "Mwishowe nilitazama zote."}]
TF = [{"label": "A", "text": "True, True"}, {"label": "B", "text": "False, False"},
      {"label": "C", "text": "True, False"}, {"label": "D", "text": "False, True"}]  # fmt: skip


@pytest.mark.parametrize(
    "output, options, expected",
    [
        # 1: the whole output is a label
        ("2", NLI_ZH, "2"), ("(3)", NLI_ZH, "3"), ("**C**", MMLU, "C"), ("b", MMLU, "B"), ("D.", MMLU, "D"),
        # 2: a label at the start
        ("(2) 中立", NLI_ZH, "2"), ("B) 4", MMLU, "B"), ("A. 0", MMLU, "A"), ("2 - neutral", NLI_EN, "2"),
        ("C: True, False", TF, "C"),
        # 3: a bracketed label anywhere; full-width brackets and digits fold to ASCII
        ("答案是：(3) 矛盾", NLI_ZH, "3"), ("（２）中立", NLI_ZH, "2"), ("إجابتي هي (2) محايد", NLI_AR, "2"),
        ("Option (D) 6 is correct.", MMLU, "D"), ("정답은 (B) 4입니다.", MMLU, "B"),
        ("उत्तर: (1) निहित", NLI_HI, "1"), ("Jibu: (2) Mwishowe nilitazama zote.", STORY_SW, "2"),
        # 4: a label after an answer cue; Arabic-Indic and Devanagari digits
        ("The answer is B.", MMLU, "B"), ("الإجابة: ٣", NLI_AR, "3"), ("答案：2", NLI_ZH, "2"),
        ("मेरा उत्तर २ है", NLI_HI, "2"), ("Ответ: C", MMLU, "C"),
        # 5: an option's text (earliest; longest on a tie)
        ("中立", NLI_ZH, "2"), ("我认为是矛盾的。", NLI_ZH, "3"), ("محايد", NLI_AR, "2"),
        ("I think the relationship is neutral.", NLI_EN, "2"), ("The degree is 4", MMLU, "B"),
        ("Mwishowe nilitazama zote.", STORY_SW, "2"), ("It is True, False.", TF, "C"),
        # 6: a lone numeric label
        ("我选2", NLI_ZH, "2"), ("I'd say 3 here", NLI_EN, "3"),
        # no answer
        ("A bird in the hand is worth two in the bush", MMLU, None),  # the article is not a label
        ("It happened in 1942", MMLU, None),  # "4" must stand alone
        ("The premise entails it", NLI_EN, None),  # "entails" is not an option text
        ("(1) 蕴涵\n(2) 中立\n(3) 矛盾", NLI_ZH, None),  # the option list repeated
        ("猫在沙发上睡觉！\n\n(1) 蕴涵\n(2) 医索\n(", NLI_ZH, None),  # ... and cut off (SmolLM2's output)
        ('1. entailment: "He bought bread"\n2. non-complementarity', NLI_EN, None),
        ("(2) 中立\n(2) 是正确的", NLI_ZH, "2"),  # one label on two lines is still an answer
        ("The answer is (2) neutral, not (1) entailment.", NLI_EN, "2"),  # inline: the first bracketed
        ("لا أعرف", NLI_AR, None), ("", NLI_ZH, None),
    ],
)
def test_extract_choice(output, options, expected):
    assert extract_choice(output, options) == expected
