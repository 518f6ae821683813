"""`[backend]` in config.toml: the default is the local index; a Lite file is relative to the config, a URL is not."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import load_config
from embeddings.errors import ConfigError


def test_default_is_local_and_the_shipped_config_says_so() -> None:
    config = load_config(str(Path(__file__).resolve().parents[1] / "config.toml"))
    assert config.backend.kind == "local" and config.engine.backend == config.backend
    assert Path(config.backend.uri).is_absolute()  # the Lite file, beside the config


@pytest.mark.parametrize(
    ("uri", "expected"),
    [("milvus/speeches.db", "{base}/milvus/speeches.db"), ("http://milvus.lan:19530", "http://milvus.lan:19530")],
)
def test_lite_file_is_beside_the_config_and_a_server_url_is_kept(tmp_path: Path, uri: str, expected: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'[backend]\nkind = "milvus"\nuri = "{uri}"\ncollection = "archive"\n', "utf-8")
    backend = load_config(str(path)).backend
    assert backend.uri == expected.format(base=tmp_path)
    assert (backend.kind, backend.collection, backend.token_env) == ("milvus", "archive", "MILVUS_TOKEN")


def test_an_unknown_backend_names_the_key_and_the_choices(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[backend]\nkind = "elastic"\n', "utf-8")
    with pytest.raises(ConfigError) as raised:
        load_config(str(path))
    assert "backend" in str(raised.value) and "local" in str(raised.value) and "milvus" in str(raised.value)


def test_the_token_is_not_a_config_key(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[backend]\ntoken = "root:Milvus"\n', "utf-8")
    with pytest.raises(ConfigError, match="token"):
        load_config(str(path))
