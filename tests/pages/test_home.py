def test_home_lists_models(app_page, tiny_lab):
    at = app_page("home").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert set(tiny_lab) <= set(table["model"])
    assert "Alignment Lab" == at.title[0].value


def test_home_shows_stage_and_parent(app_page, tiny_lab):
    at = app_page("home").run()
    table = at.dataframe[0].value.set_index("model")
    assert table.loc[tiny_lab[1], "stage"] == "sft"
    assert table.loc[tiny_lab[1], "started from"] == tiny_lab[0]
