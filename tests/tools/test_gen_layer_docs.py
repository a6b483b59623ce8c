def test_layer_docs_are_up_to_date(tool):
    """docs/layers.rst is what the registry gives; after adding a layer run tools/gen_layer_docs.py."""
    assert tool("gen_layer_docs").main(["--check"]) == 0


def test_layer_docs_list_every_layer_and_alias(tool, tmp_path):
    module = tool("gen_layer_docs")
    out = tmp_path / "layers.rst"
    assert module.main(["--out", str(out)]) == 0
    text = out.read_text()
    for heading in ('"linear"', '"rec"', '"subnetwork"', "Options every layer accepts"):
        assert heading in text
    assert 'Also: ``"hidden"``, ``"forward"``.' in text
    assert "- ``kind`` (str): required" in text
    out.write_text(text + "edited\n")
    assert module.main(["--out", str(out), "--check"]) == 1
