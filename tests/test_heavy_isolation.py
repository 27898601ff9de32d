"""The heavy suite's big-memory cases are recognised by name (tests/conftest.py), whatever the case of
the library's spelling: each one runs alone in a process of its own."""

from types import SimpleNamespace

from conftest import is_big_memory, scheduling_unit


def _item(originalname, name, heavy=True):
    return SimpleNamespace(originalname=originalname, name=name,
                           get_closest_marker=lambda mark: object() if heavy and mark == "heavy" else None)


def test_big_memory_cases_are_found_case_blind():
    big = [("test_parity_and_round_trip_heavy", "test_parity_and_round_trip_heavy[ResNet152-native]"),
           ("test_parity_and_round_trip_heavy", "test_parity_and_round_trip_heavy[EfficientNetB6-native]"),
           ("test_import_parity_native_resolution", "test_import_parity_native_resolution[timm/resnet101]"),
           ("test_train_grad_step_parity_all", "test_train_grad_step_parity_all[efficientnet_b7]")]
    small = [("test_parity_and_round_trip_heavy", "test_parity_and_round_trip_heavy[ResNet50-native]"),
             ("test_variant", "test_variant[keras/EfficientNetB7]"),  # not one of the big checks
             ("test_train_grad_step_parity_all", "test_train_grad_step_parity_all[efficientnet_b3]")]
    assert all(is_big_memory(_item(*case)) for case in big)
    assert not any(is_big_memory(_item(*case)) for case in small)
    assert not is_big_memory(_item(*big[0], heavy=False))


def test_scheduling_units():
    """What the xdist controller groups: every big-memory case into one unit (one worker runs them in
    turn, from the start), tests/test_keras_backends.py into one, every other test alone."""
    assert scheduling_unit("tests/test_parity_networks.py::test_train_grad_step_parity_all[efficientnet_b7]") == \
        scheduling_unit("tests/test_import_keras_applications.py::test_parity_and_round_trip_heavy[ResNet152-native]") \
        == "big-memory"
    small = "tests/test_parity_networks.py::test_train_grad_step_parity_all[efficientnet_b3]"
    assert scheduling_unit(small) == small
    # Keras Applications' spelling (no underscore): run beside a big-memory case, EfficientNetV2L at
    # native size took the heavy import tests to 21 GiB
    for name in ("EfficientNetV2L-native", "EfficientNetV2M-225"):
        assert scheduling_unit(f"tests/test_import_keras_applications.py::test_parity_and_round_trip_heavy[{name}]") \
            == "big-memory"
    assert scheduling_unit("tests/test_deploy.py::test_heavy_every_other_member_to_a_target[convnext_base-tflite]") \
        == "big-memory"
    assert scheduling_unit("tests/test_deploy.py::test_heavy_every_other_member_to_a_target[resnet34-savedmodel]") \
        .endswith("savedmodel]")
    assert scheduling_unit("tests/test_jax_impl.py::test_variant[keras/EfficientNetB7]").endswith("B7]")
    assert scheduling_unit("tests/test_keras_backends.py::test_eval_parity[jax]") == "keras-backends"
    assert scheduling_unit("tests/test_x.py::test_y[a]@grp") == "grp"
