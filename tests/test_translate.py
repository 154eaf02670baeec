"""Translation: the transformers MT backend on tiny random models, the memory, resumption."""

from __future__ import annotations

import io
import json

import pytest

from crosstune import languages
from crosstune.translate import (
    Backend,
    MemoryBackend,
    MemoryMiss,
    TranslationMemory,
    make_backend,
    translate_records,
    translate_texts,
)

# Inputs of different lengths (so batching reorders them), a repeat and an empty string.
TEXTS = [
    "Which planet is closest to the Sun?",
    "Water boils at 100 degrees Celsius at sea level.",
    "Hello",
    "",
    "Plants absorb carbon dioxide from the air and use it, together with water and sunlight, to make sugars.",
    "Which planet is closest to the Sun?",
    "Name three primary colours.",
]


# --------------------------------------------------------------------------- tiny MT models
def _corpus() -> list[str]:
    from crosstune.data.sources import seed_texts

    return seed_texts()


def _m2m100_tokenizer(tmp, language_codes="m2m100"):
    """M2M100Tokenizer over a sentencepiece BPE model trained on the seed texts."""
    import sentencepiece as spm
    from transformers import M2M100Tokenizer

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus()), model_writer=buf, vocab_size=1000, model_type="bpe",
        bos_id=0, pad_id=1, eos_id=2, unk_id=3, character_coverage=1.0, hard_vocab_limit=False,
        minloglevel=2, num_threads=1,
    )  # fmt: skip
    (tmp / "sentencepiece.bpe.model").write_bytes(buf.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    (tmp / "vocab.json").write_text(json.dumps({sp.id_to_piece(i): i for i in range(sp.get_piece_size())}))
    return M2M100Tokenizer(str(tmp / "vocab.json"), str(tmp / "sentencepiece.bpe.model"),
                           language_codes=language_codes, model_max_length=128)  # fmt: skip


def _bpe(vocab_size=1000):
    """A Metaspace BPE (the NLLB tokenizer's model type) trained on the seed texts: (vocab, merges)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                  show_progress=False)  # fmt: skip
    tok.train_from_iterator(_corpus(), trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return model["vocab"], merges


def _nllb_tokenizer():
    """NllbTokenizer with the FLORES-200 codes of our 22 languages as special tokens."""
    from transformers import NllbTokenizer

    vocab, merges = _bpe()
    codes = [flores for _, flores, _ in languages.LANGUAGES.values()]
    return NllbTokenizer(vocab=vocab, merges=merges, extra_special_tokens=codes, model_max_length=128)


def _save_model(tokenizer, out, extra_ids=0):
    """A 1+1-layer M2M100 (d_model 32) with random weights, saved with its tokenizer."""
    import torch
    from transformers import M2M100Config, M2M100ForConditionalGeneration

    lang_ids = getattr(tokenizer, "lang_code_to_id", {}).values()
    vocab = max([len(tokenizer), *(i + 1 for i in lang_ids)]) + extra_ids
    config = M2M100Config(
        vocab_size=vocab, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2,
        init_std=0.5,  # large weights: the output depends visibly on the input
    )  # fmt: skip
    torch.manual_seed(0)
    M2M100ForConditionalGeneration(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def mt_dirs(tmp_path_factory):
    """{"m2m100": dir, "nllb": dir} of saved tiny MT models."""
    m2m = tmp_path_factory.mktemp("tiny-m2m100")
    nllb = tmp_path_factory.mktemp("tiny-nllb")
    return {
        "m2m100": _save_model(_m2m100_tokenizer(m2m), m2m, extra_ids=8),  # + M2M100's made-up words
        "nllb": _save_model(_nllb_tokenizer(), nllb),
    }


@pytest.fixture(scope="module")
def backends(mt_dirs):
    from crosstune.mt import TransformersBackend

    return {s: TransformersBackend(str(d), batch_size=3, max_new_tokens=6, device="cpu") for s, d in mt_dirs.items()}


def _lang_id(backend, code):
    """The target-language token id, looked up independently of the backend's code."""
    flores, m2m = languages.LANGUAGES[code][1:]
    if backend.scheme == "nllb":
        return backend.tokenizer.convert_tokens_to_ids(flores)
    return backend.tokenizer.get_lang_id(m2m)


# --------------------------------------------------------------------------- the backend
@pytest.mark.parametrize("scheme", ["m2m100", "nllb"])
def test_backend_translates_a_batch_aligned_with_its_input(backends, mt_dirs, scheme):
    backend = backends[scheme]
    assert backend.scheme == scheme
    assert backend.engine == f"transformers:{mt_dirs[scheme]}"
    out = backend.translate(TEXTS, "en", "sw")
    assert len(out) == len(TEXTS) and all(isinstance(t, str) for t in out)
    assert out[3] == ""  # the empty string
    assert out[0] == out[5]  # the repeated string
    ids = backend.generate_ids(TEXTS, "en", "sw")
    assert len({tuple(x) for x in ids}) >= 4, "the tiny model must give different outputs for different inputs"
    # batched (sorted by length, batch_size 3) == one by one, so the order was restored
    assert ids == [backend.generate_ids([t], "en", "sw")[0] for t in TEXTS]
    assert out == [backend.translate([t], "en", "sw")[0] for t in TEXTS]
    assert backend.translate(TEXTS, "en", "sw") == out  # deterministic


@pytest.mark.parametrize("scheme", ["m2m100", "nllb"])
def test_target_language_is_forced_as_first_generated_token(backends, scheme):
    backend = backends[scheme]
    start = backend.model.generation_config.decoder_start_token_id
    for tgt in ("sw", "zh", "ar"):
        for seq in backend.generate_ids(TEXTS, "en", tgt):
            if seq:
                assert seq[0] == start and seq[1] == _lang_id(backend, tgt)
    # the target changes the output, and decoding drops the language token
    assert backend.translate(TEXTS[:1], "en", "zh") != backend.translate(TEXTS[:1], "en", "ar")
    flores_or_m2m = languages.mt_code("zh", scheme)
    assert all(flores_or_m2m not in t for t in backend.translate(TEXTS, "en", "zh"))


@pytest.mark.parametrize("scheme", ["m2m100", "nllb"])
def test_source_language_token_starts_the_encoder_input(backends, scheme):
    backend = backends[scheme]
    a = backend.translate(TEXTS[:1], "ru", "en")
    assert backend.tokenizer("Hello")["input_ids"][0] == _lang_id(backend, "ru")
    assert backend.translate(TEXTS[:1], "hi", "en") != a  # the source code reaches the model


def test_beam_search_matches_one_by_one(mt_dirs):
    from crosstune.mt import TransformersBackend

    beam = TransformersBackend(str(mt_dirs["nllb"]), batch_size=4, max_new_tokens=5, num_beams=3, device="cpu")
    out = beam.translate(TEXTS, "en", "hi")
    assert out == [beam.translate([t], "en", "hi")[0] for t in TEXTS]


def test_unsupported_language_names_model_and_language(backends, mt_dirs):
    m2m = backends["m2m100"]
    for code, name in (("eu", "Basque"), ("te", "Telugu")):
        with pytest.raises(ValueError, match=f"{mt_dirs['m2m100']}.*{name} \\({code}\\)"):
            m2m.translate(["Hello"], "en", code)
        with pytest.raises(ValueError, match=name):
            m2m.translate(["Hello"], code, "en")
    # NLLB-200 covers all 22
    assert len(backends["nllb"].translate(["Hello"], "en", "eu")) == 1


def test_language_missing_from_the_tokenizer(tmp_path):
    """An M2M100 tokenizer with the WMT21 code set lacks Arabic: the error names model and code."""
    from crosstune.mt import TransformersBackend

    out = _save_model(_m2m100_tokenizer(tmp_path, language_codes="wmt21"), tmp_path, extra_ids=8)
    backend = TransformersBackend(str(out), max_new_tokens=2, device="cpu")
    assert backend.translate(["Hello"], "en", "de")[0] is not None
    with pytest.raises(ValueError, match=f"{out} does not support Arabic \\(ar\\).*no language code 'ar'"):
        backend.translate(["Hello"], "en", "ar")


def test_model_without_language_codes_is_rejected(tmp_path):
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    from crosstune.mt import TransformersBackend

    vocab, merges = _bpe()
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE(vocab, merges, unk_token="<unk>")),
                                  unk_token="<unk>", pad_token="<pad>", eos_token="</s>")  # fmt: skip
    _save_model(tok, tmp_path)
    with pytest.raises(ValueError, match="neither NLLB-200 language codes .* nor M2M100"):
        TransformersBackend(str(tmp_path), device="cpu")


def test_device_auto_resolves_to_an_available_device():
    import torch

    from crosstune.mt import resolve_device

    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cuda:1") == "cuda:1"


# --------------------------------------------------------------------------- memory and sharding
class Counting(Backend):
    """A deterministic fake MT system that records what it was asked to translate."""

    def __init__(self, engine="fake:mt", fail_on_call=None):
        self.engine = engine
        self.calls: list[list[str]] = []
        self.fail_on_call = fail_on_call

    def translate(self, texts, src, tgt):
        self.calls.append(list(texts))
        if len(self.calls) == self.fail_on_call:
            raise RuntimeError("killed")
        return [f"[{src}>{tgt}] {t[::-1]}" for t in texts]

    @property
    def translated(self):
        return [t for call in self.calls for t in call]


class Refusing(Backend):
    engine = "fake:mt"

    def translate(self, texts, src, tgt):
        raise AssertionError(f"backend called for {texts}")


def test_memory_hit_does_not_call_the_backend(tmp_path):
    memory = TranslationMemory(tmp_path / "tm.sqlite")
    memory.put("fake:mt", "en", "sw", [("Hello", "Habari"), ("Thanks", "Asante")])
    assert translate_texts(["Thanks", "Hello", "Thanks"], "en", "sw", Refusing(), memory) == ["Asante", "Habari", "Asante"]
    # keyed by engine and direction
    assert memory.get("other:mt", "en", "sw", ["Hello"]) == {}
    assert memory.get("fake:mt", "sw", "en", ["Hello"]) == {}


def test_memory_only_miss_names_the_string_and_both_languages(tmp_path):
    memory = TranslationMemory(tmp_path / "tm.sqlite")
    memory.put("human:crosstune-seed", "en", "sw", [("Hello", "Habari")])
    with pytest.raises(MemoryMiss, match=r"(?s)English \(en\) -> Swahili \(sw\).*'Good night'") as err:
        translate_texts(["Hello", "Good night"], "en", "sw", MemoryBackend("human:crosstune-seed"), memory)
    assert "'Hello'" not in str(err.value) and "1 string(s)" in str(err.value)


def test_memory_persists_across_reopen(tmp_path):
    path = tmp_path / "sub" / "tm.sqlite"
    memory = TranslationMemory(path)
    backend = Counting()
    first = translate_texts(["a", "b"], "en", "zh", backend, memory)
    memory.close()
    again = TranslationMemory(path)
    assert again.count("fake:mt") == 2 and again.count() == 2
    assert translate_texts(["b", "a"], "en", "zh", Refusing(), again) == first[::-1]


def test_each_unique_string_is_translated_once(tmp_path):
    backend = Counting()
    out = translate_texts(["x", "y", "x", "z", "y"], "en", "ar", backend, TranslationMemory(tmp_path / "tm"), shard_size=2)
    assert backend.calls == [["x", "y"], ["z"]]
    assert out == ["[en>ar] x", "[en>ar] y", "[en>ar] x", "[en>ar] z", "[en>ar] y"]


def test_resume_after_a_killed_shard(tmp_path):
    texts = [f"sentence number {i}" for i in range(9)] + ["sentence number 2"]
    unique = list(dict.fromkeys(texts))
    memory = TranslationMemory(tmp_path / "tm.sqlite")
    with pytest.raises(RuntimeError, match="killed"):
        translate_texts(texts, "en", "ru", Counting(fail_on_call=3), memory, shard_size=2)
    assert memory.count() == 4  # shards 1 and 2 were committed, shard 3 was lost
    memory.close()
    rerun = Counting()
    out = translate_texts(texts, "en", "ru", rerun, TranslationMemory(tmp_path / "tm.sqlite"), shard_size=2)
    assert rerun.translated == unique[4:]
    assert out == translate_texts(texts, "en", "ru", Counting(), TranslationMemory(tmp_path / "fresh"), shard_size=2)


def test_resume_with_the_transformers_backend(tmp_path, backends):
    """Killed MT run + rerun == uninterrupted run, with the real backend on a tiny model."""
    real = backends["m2m100"]

    class Killed(Backend):
        engine = real.engine

        def __init__(self):
            self.calls = 0

        def translate(self, texts, src, tgt):
            self.calls += 1
            if self.calls == 2:
                raise RuntimeError("killed")
            return real.translate(texts, src, tgt)

    texts = [t for t in TEXTS if t]
    with pytest.raises(RuntimeError):
        translate_texts(texts, "en", "fr", Killed(), TranslationMemory(tmp_path / "a"), shard_size=2)
    resumed = translate_texts(texts, "en", "fr", real, TranslationMemory(tmp_path / "a"), shard_size=2)
    assert resumed == translate_texts(texts, "en", "fr", real, TranslationMemory(tmp_path / "b"), shard_size=2)


def test_wrong_number_of_translations_is_an_error(tmp_path):
    class Short(Counting):
        def translate(self, texts, src, tgt):
            return super().translate(texts, src, tgt)[:-1]

    with pytest.raises(RuntimeError, match="returned 1 translations for 2 strings"):
        translate_texts(["a", "b"], "en", "sw", Short(), TranslationMemory(tmp_path / "tm"))


# --------------------------------------------------------------------------- records
RECORDS = [
    {"id": "s/e1", "lang": "en", "instruction": "Say hi", "response": "Hi", "source": "s"},
    {"id": "s/e2", "lang": "en", "instruction": "Count", "response": "1 2 3", "source": "s"},
    {"id": "aya/7", "lang": "sw", "instruction": "Sema habari", "response": "Habari", "source": "aya"},
    {"id": "aya/8", "lang": "ar", "instruction": "قل مرحبا", "response": "مرحبا", "source": "aya"},
]


def test_translate_records_english_to_target_and_native_to_english(tmp_path):
    backend = Counting()
    out = translate_records(RECORDS, "sw", backend, TranslationMemory(tmp_path / "tm"),
                            fields=["instruction", "response"], fields_to_en=["instruction"])  # fmt: skip
    assert out == [
        {"id": "s/e1#sw", "lang": "sw", "source": "s", "instruction": "[en>sw] ih yaS",
         "instruction_en": "Say hi", "response": "[en>sw] iH", "response_en": "Hi"},
        {"id": "s/e2#sw", "lang": "sw", "source": "s", "instruction": "[en>sw] tnuoC",
         "instruction_en": "Count", "response": "[en>sw] 3 2 1", "response_en": "1 2 3"},
        {"id": "aya/7", "lang": "sw", "source": "aya", "instruction": "Sema habari", "response": "Habari",
         "instruction_en": "[sw>en] irabah ameS", "response_en": None},
    ]  # fmt: skip
    assert translate_records(RECORDS, "en", backend, TranslationMemory(tmp_path / "tm"), ["instruction"], []) == []
    with pytest.raises(ValueError, match="unknown language code 'xx'"):
        translate_records(RECORDS, "xx", backend, TranslationMemory(tmp_path / "tm"), ["instruction"], [])


def test_translate_records_only_the_configured_fields(tmp_path):
    out = translate_records(RECORDS, "ar", Counting(), TranslationMemory(tmp_path / "tm"),
                            fields=["instruction"], fields_to_en=["instruction", "response"])  # fmt: skip
    english, native = out[0], out[2]
    assert english["instruction"] == "[en>ar] ih yaS" and english["response"] == "Hi"
    assert native["id"] == "aya/8" and native["response_en"] == "[ar>en] ابحرم"


# --------------------------------------------------------------------------- engines
@pytest.mark.parametrize("memory_only", [True, False])
@pytest.mark.parametrize(
    "engine, message",
    [
        ("nllb-200", "is not of the form '<backend>:<model>'"),
        ("transformers:", "is not of the form"),
        (":facebook/nllb", "unknown backend ''"),
        ("openai:gpt", "unknown backend 'openai'"),
    ],
)
def test_make_backend_rejects_bad_engines(engine, message, memory_only):
    with pytest.raises(ValueError, match=f"translate.engine: .*{message}"):
        make_backend(engine, memory_only)


def test_make_backend_kinds(mt_dirs):
    assert isinstance(make_backend("human:crosstune-seed", memory_only=False), MemoryBackend)
    mem = make_backend("transformers:facebook/nllb-200-distilled-600M", memory_only=True)
    assert isinstance(mem, MemoryBackend) and mem.engine == "transformers:facebook/nllb-200-distilled-600M"
    mt = make_backend(f"transformers:{mt_dirs['nllb']}", memory_only=False, batch_size=5, max_new_tokens=7,
                      num_beams=2, device="cpu")  # fmt: skip
    assert type(mt).__name__ == "TransformersBackend" and mt.engine == f"transformers:{mt_dirs['nllb']}"
    assert (mt.batch_size, mt.max_new_tokens, mt.num_beams, str(mt.device)) == (5, 7, 2, "cpu")


def test_decoding_settings_are_part_of_the_memory_key(tmp_path, mt_dirs):
    """Changing num_beams must retranslate, not return the greedy translations from the memory."""
    engine = f"transformers:{mt_dirs['nllb']}"
    greedy = make_backend(engine, memory_only=False, num_beams=1, max_new_tokens=7, device="cpu")
    beams = make_backend(engine, memory_only=False, num_beams=2, max_new_tokens=7, device="cpu")
    assert greedy.memory_key != beams.memory_key
    memory = TranslationMemory(tmp_path / "tm.sqlite")
    translate_texts(["Hello there"], "en", "sw", greedy, memory)
    assert memory.get(beams.memory_key, "en", "sw", ["Hello there"]) == {}
    # memory-only mode with the same settings finds what the model stored
    reader = make_backend(engine, memory_only=True, num_beams=1, max_new_tokens=7)
    assert translate_texts(["Hello there"], "en", "sw", reader, memory) == translate_texts(
        ["Hello there"], "en", "sw", greedy, memory
    )
    assert make_backend("human:crosstune-seed", memory_only=True).memory_key == "human:crosstune-seed"


def test_truncation_at_max_new_tokens_is_logged(backends, caplog):
    """A random tiny model rarely emits </s>: outputs stop at max_new_tokens, and that is logged."""
    backend = backends["nllb"]
    with caplog.at_level("WARNING", logger="crosstune.mt"):
        ids = backend.generate_ids(TEXTS, "en", "sw")
    cut = [x for x in ids if x and x[-1] != backend.tokenizer.eos_token_id]
    assert cut and all(len(x) == 1 + 6 for x in cut)  # decoder start + max_new_tokens (language included)
    assert f"en->sw: {len(cut)} of 6 translation(s) stopped at max_new_tokens=6" in caplog.text
