import re

import numpy as np

from returnn.datasets import TaskXmlModelingDataset, init_dataset


def _text(ids) -> str:
    return "".join(TaskXmlModelingDataset.SYMBOLS[i] for i in ids)


def test_xml_targets_predict_what_the_open_tags_determine():
    assert _text(TaskXmlModelingDataset.targets_for(" <ab></ab>")) == "<   < ab><"
    assert _text(TaskXmlModelingDataset.targets_for(" <a><bc></bc></a>")) == "<  <   < bc>< a><"


def test_xml_sequences_are_well_formed_one_hot_and_respect_the_stack_limit():
    dataset = init_dataset({"class": "TaskXmlModelingDataset", "num_seqs": 30, "limit_stack_depth": 2,
                            "fixed_random_seed": 4})
    dataset.init_seq_order(epoch=1)
    assert dataset.num_inputs == 12 and dataset.get_data_dim("classes") == 12
    for i in range(30):
        features = dataset.get_data(i, "data")
        np.testing.assert_array_equal(features.sum(axis=1), 1.0)
        text = _text(features.argmax(axis=1))
        depth, max_depth = 0, 0
        for closing, name in re.findall(r"<(/?)([a-h]+)>", text):
            depth += -1 if closing else 1
            max_depth = max(max_depth, depth)
        assert depth == 0 and 1 <= max_depth <= 2 and text.startswith(" <")
        np.testing.assert_array_equal(dataset.get_data(i, "classes"), TaskXmlModelingDataset.targets_for(text))
