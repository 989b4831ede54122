from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from lightly_krepes.data import (
    ADULT_AUDIT_COLUMNS,
    ADULT_COLUMNS,
    ADULT_SENSITIVE_COLUMNS,
    AdultDataset,
    AdultPreprocessor,
    load_adult,
    load_adult_1m,
    read_adult_csv,
)

# Real Adult formatting: a space after each comma, "?" for missing values.
_TRAIN = """\
39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40, United-States, <=50K
50, Self-emp-not-inc, 83311, Bachelors, 13, Married-civ-spouse, Exec-managerial, Husband, White, Male, 0, 0, 13, United-States, >50K
38, Private, 215646, HS-grad, 9, Divorced, Handlers-cleaners, Not-in-family, White, Female, 0, 0, 40, United-States, <=50K
53, ?, 234721, 11th, 7, Married-civ-spouse, ?, Husband, Black, Male, 0, 0, 40, United-States, <=50K
28, Private, 338409, Bachelors, 13, Married-civ-spouse, Prof-specialty, Wife, Black, Female, 0, 0, 40, Cuba, >50K
37, Private, 284582, Masters, 14, Married-civ-spouse, Exec-managerial, Wife, White, Female, 0, 0, 40, United-States, <=50K

"""  # noqa: E501
# The test file's junk first line and the trailing "." of its labels; "Atlantis"
# and "Never-worked" are unseen in training, and native_country has no "?" there.
_TEST = """\
|1x3 Cross validator
25, Private, 226802, 11th, 7, Never-married, Machine-op-inspct, Own-child, Black, Male, 0, 0, 40, United-States, <=50K.
38, Never-worked, 89814, HS-grad, 9, Married-civ-spouse, Farming-fishing, Husband, White, Male, 0, 0, 50, Atlantis, >50K.
28, ?, 336951, Assoc-acdm, 12, Married-civ-spouse, ?, Husband, White, Male, 0, 0, 40, ?, >50K.

"""  # noqa: E501


def _real_root() -> Path:
    env = os.environ.get("LIGHTLY_KREPES_DATA")
    root = Path(env) if env else Path(__file__).parents[2].parent / "shared" / "data"
    if not (root / "adult" / "adult.test").is_file():
        pytest.skip(
            f"real Adult files not found in {root / 'adult'}; set LIGHTLY_KREPES_DATA "
            "to the folder holding adult/ to run this test."
        )
    return root


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "adult"
    folder.mkdir()
    (folder / "adult.data").write_text(_TRAIN)
    (folder / "adult.test").write_text(_TEST)
    return tmp_path


def _column(data_names: tuple[str, ...], name: str) -> int:
    return data_names.index(name)


class TestReadAdultCSV:
    def test_read_adult_csv__train(self, root: Path) -> None:
        raw, labels = read_adult_csv(root / "adult" / "adult.data")
        assert set(raw) == set(ADULT_COLUMNS)
        assert labels.dtype == np.int64
        assert labels.tolist() == [0, 1, 0, 0, 1, 0]
        assert raw["age"].tolist() == [39, 50, 38, 53, 28, 37]
        assert raw["workclass"].tolist()[:4] == [
            "State-gov",
            "Self-emp-not-inc",
            "Private",
            "?",
        ]
        assert raw["native_country"][4] == "Cuba"

    def test_read_adult_csv__test_format(self, root: Path) -> None:
        raw, labels = read_adult_csv(root / "adult" / "adult.test")
        assert labels.tolist() == [0, 1, 1]
        assert raw["age"].tolist() == [25, 38, 28]
        assert raw["native_country"].tolist() == ["United-States", "Atlantis", "?"]

    def test_read_adult_csv__wrong_field_count(self, tmp_path: Path) -> None:
        path = tmp_path / "adult.data"
        path.write_text(_TRAIN.splitlines()[0] + "\n39, State-gov, 77516\n")
        with pytest.raises(ValueError, match=r"adult\.data:2: expected 15"):
            read_adult_csv(path)

    def test_read_adult_csv__bad_label(self, tmp_path: Path) -> None:
        path = tmp_path / "adult.data"
        path.write_text(_TRAIN.splitlines()[0].replace("<=50K", "maybe") + "\n")
        with pytest.raises(ValueError, match="label must be"):
            read_adult_csv(path)

    def test_read_adult_csv__bad_number(self, tmp_path: Path) -> None:
        path = tmp_path / "adult.data"
        path.write_text(_TRAIN.splitlines()[0].replace("39,", "old,") + "\n")
        with pytest.raises(ValueError, match="column age must be numeric"):
            read_adult_csv(path)


class TestAdultPreprocessor:
    def test_fit__missing_is_last_category(self, root: Path) -> None:
        raw, _ = read_adult_csv(root / "adult" / "adult.data")
        prep = AdultPreprocessor.fit(raw)
        assert prep.categories["workclass"] == (
            "Private",
            "Self-emp-not-inc",
            "State-gov",
            "?",
        )
        assert "workclass=missing" in prep.feature_names
        assert "native_country=missing" not in prep.feature_names

    def test_transform__numeric_missing_is_train_mean(self) -> None:
        train = {"age": np.array([20.0, 40.0])}
        prep = AdultPreprocessor.fit(train, columns=("age",))
        out = prep.transform({"age": np.array([np.nan, 50.0])})
        assert out.tolist() == [[0.0], [2.0]]


class TestLoadAdult:
    def test_load_adult__train(self, root: Path) -> None:
        data = load_adult("train", root)
        assert len(data) == 6
        assert data.features.dtype == torch.float32
        assert data.labels.tolist() == [0, 1, 0, 0, 1, 0]
        # 6 numeric + workclass 4 + education 4 + marital 3 + occupation 5
        # + relationship 3 + race 2 + sex 2 + native_country 2
        assert data.features.shape == (6, 31)
        assert len(data.feature_names) == 31
        names = data.feature_names
        for name in ("age", "fnlwgt", "capital_gain", "hours_per_week"):
            column = data.features[:, _column(names, name)].double()
            assert abs(float(column.mean())) < 1e-6
            assert abs(float(column.std(unbiased=False)) - 1.0) < 1e-5

    def test_load_adult__test_uses_train_statistics(self, root: Path) -> None:
        train_raw, _ = read_adult_csv(root / "adult" / "adult.data")
        test = load_adult("test", root)
        assert test.labels.tolist() == [0, 1, 1]
        ages = train_raw["age"]
        expected = (np.array([25, 38, 28]) - ages.mean()) / ages.std()
        np.testing.assert_allclose(
            test.features[:, _column(test.feature_names, "age")].numpy(),
            expected,
            rtol=1e-5,
        )
        assert test.feature_names == load_adult("train", root).feature_names

    def test_load_adult__one_hot_and_missing(self, root: Path) -> None:
        train = load_adult("train", root)
        test = load_adult("test", root)
        for block in train.feature_slices.values():
            if block.stop - block.start > 1:
                assert torch.equal(
                    train.features[:, block].sum(1), torch.ones(len(train))
                )
        workclass = test.feature_view("workclass")
        names = test.feature_names[test.feature_slices["workclass"]]
        assert workclass[0, names.index("workclass=Private")] == 1
        # Unseen category "Never-worked" maps to all zeros; "?" to its indicator.
        assert workclass[1].sum() == 0
        assert workclass[2, names.index("workclass=missing")] == 1
        # "Atlantis" is unseen and native_country had no "?" in training.
        country = test.feature_view("native_country")
        assert country.sum(1).tolist() == [1.0, 0.0, 0.0]

    def test_load_adult__feature_slices(self, root: Path) -> None:
        data = load_adult("train", root)
        slices = data.feature_slices
        assert list(slices) == list(ADULT_COLUMNS)
        starts = [s.start for s in slices.values()]
        stops = [s.stop for s in slices.values()]
        assert starts[0] == 0
        assert starts[1:] == stops[:-1]
        assert stops[-1] == data.features.shape[1]
        for name, block in slices.items():
            for column in data.feature_names[block]:
                assert column == name or column.startswith(f"{name}=")
        assert data.feature_view("sex").shape == (6, 2)
        with pytest.raises(KeyError, match="not an encoded feature"):
            data.feature_view("income")

    def test_load_adult__sensitive_and_raw(self, root: Path) -> None:
        data = load_adult("test", root)
        assert tuple(data.sensitive) == ADULT_SENSITIVE_COLUMNS
        assert data.sensitive["sex"].tolist() == ["Male"] * 3
        assert data.sensitive["age"].tolist() == [25, 38, 28]
        for name in ADULT_AUDIT_COLUMNS:
            assert data.raw[name].shape == (3,)
        assert data.raw["occupation"].tolist()[2] == "?"
        assert data.raw["education"].tolist()[0] == "11th"

    def test_load_adult__drop(self, root: Path) -> None:
        data = load_adult("train", root, drop=("fnlwgt", "native_country"))
        assert data.features.shape == (6, 28)
        assert "fnlwgt" not in data.feature_slices
        assert "native_country" in data.raw
        with pytest.raises(ValueError, match="Unknown Adult features"):
            load_adult("train", root, drop=("salary",))

    def test_load_adult__max_samples(self, root: Path) -> None:
        data = load_adult("train", root, max_samples=3, seed=0)
        assert len(data) == 3
        assert sorted(data.labels.tolist()) == [0, 0, 1]
        full = load_adult("train", root)
        rows = torch.from_numpy(data.source_indices)
        assert torch.equal(data.features, full.features[rows])
        assert data.raw["age"].tolist() == full.raw["age"][data.source_indices].tolist()

    def test_load_adult__missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError) as info:
            load_adult("train", tmp_path)
        assert str(tmp_path / "adult" / "adult.data") in str(info.value)
        assert "UCI" in str(info.value)
        (tmp_path / "adult.data").write_text(_TRAIN)
        assert len(load_adult("train", tmp_path)) == 6
        with pytest.raises(FileNotFoundError) as info:
            load_adult("test", tmp_path)
        assert str(tmp_path / "adult.test") in str(info.value)

    def test_load_adult__unknown_split(self, root: Path) -> None:
        with pytest.raises(ValueError, match="split"):
            load_adult("validation", root)


class TestAdultResample:
    def test_resample__reproducible(self, root: Path) -> None:
        data = load_adult("train", root)
        big = data.resample(100, seed=5)
        assert len(big) == 100
        assert big.resampled and not data.resampled
        assert big.features.shape == (100, data.features.shape[1])
        assert torch.equal(big.features, data.features[big.source_indices])
        assert torch.equal(big.labels, data.labels[big.source_indices])
        assert big.sensitive["sex"].shape == (100,)
        assert np.array_equal(
            big.source_indices, data.resample(100, seed=5).source_indices
        )
        assert not np.array_equal(
            big.source_indices, data.resample(100, seed=6).source_indices
        )
        with pytest.raises(ValueError, match="non-negative"):
            data.resample(-1)

    def test_load_adult_1m__small(self, root: Path) -> None:
        big = load_adult_1m(root, n=1000, seed=0)
        assert len(big) == 1000
        assert big.resampled
        assert set(big.source_indices.tolist()) <= set(range(6))
        same = load_adult_1m(root, n=1000, seed=0)
        assert torch.equal(big.features, same.features)


class TestAdult1M:
    def test_load_adult_1m__jitter_is_seeded_and_not_copies(self, root: Path) -> None:
        n = 20_000
        train = load_adult("train", root)
        big = load_adult_1m(root, n=n, seed=3, numeric_noise=0.5, swap_rate=0.1)
        again = load_adult_1m(root, n=n, seed=3, numeric_noise=0.5, swap_rate=0.1)
        other = load_adult_1m(root, n=n, seed=4, numeric_noise=0.5, swap_rate=0.1)
        assert torch.equal(big.features, again.features)
        assert not torch.equal(big.features, other.features)
        assert big.resampled and "seed 3" in big.construction
        assert "rate 0.1" in big.construction
        source = train.subset(big.source_indices)
        assert torch.equal(big.labels, source.labels)
        assert big.feature_names == load_adult("test", root).feature_names
        expected = torch.from_numpy(big.preprocessor.transform(big.raw))
        assert torch.equal(big.features, expected)
        # The 6 training rows are distinct, so plain resampling repeats all but 6.
        copies = load_adult_1m(root, n=n, seed=3, numeric_noise=0, swap_rate=0)
        assert copies.num_duplicates == n - 6
        assert torch.equal(copies.features, train.features[copies.source_indices])
        assert big.num_duplicates is not None
        assert 0 <= big.num_duplicates < copies.num_duplicates
        assert (
            big.num_duplicates
            == n
            - torch.unique(
                torch.cat([big.features, big.labels[:, None].float()], dim=1), dim=0
            ).shape[0]
        )

    def test_load_adult_1m__numeric_jitter_stays_in_the_data_domain(
        self, root: Path
    ) -> None:
        train = load_adult("train", root)
        big = load_adult_1m(root, n=20_000, seed=0, numeric_noise=0.5, swap_rate=0)
        old = train.subset(big.source_indices).raw
        for name in ("age", "fnlwgt", "hours_per_week", "capital_gain"):
            values = big.raw[name]
            assert np.array_equal(values, np.rint(values))
            low, high = train.raw[name].min(), train.raw[name].max()
            assert values.min() >= low and values.max() <= high
        assert np.mean(big.raw["age"] != old["age"]) > 0.5
        # Zero capital gains stay zero; the nonzero one (2174) is jittered.
        zero = old["capital_gain"] == 0
        assert np.all(big.raw["capital_gain"][zero] == 0)
        assert np.all(big.raw["capital_gain"][~zero] == 2174)  # its range is 1 value
        # education_num follows education; without swaps both are unchanged.
        assert np.array_equal(big.raw["education_num"], old["education_num"])
        for name in ("sex", "education", "native_country"):
            assert np.array_equal(big.raw[name], old[name])

    def test_load_adult_1m__category_swaps_at_the_stated_rate(self, root: Path) -> None:
        train = load_adult("train", root)
        big = load_adult_1m(root, n=20_000, seed=1, numeric_noise=0, swap_rate=0.1)
        old = train.subset(big.source_indices).raw
        # A swap re-draws from the training distribution (3 Male, 3 Female), so a
        # value changes with probability 0.1 * 1/2; the std of the rate is 0.0015.
        changed = float(np.mean(big.raw["sex"] != old["sex"]))
        assert abs(changed - 0.05) < 0.01
        assert set(big.raw["workclass"]) <= set(train.raw["workclass"])
        assert np.array_equal(big.raw["age"], old["age"])
        # education_num is the one that goes with the (possibly swapped) education.
        by_education = dict(
            zip(train.raw["education"], train.raw["education_num"], strict=True)
        )
        assert [by_education[e] for e in big.raw["education"]] == list(
            big.raw["education_num"]
        )

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"split": "test"}, "adult.test stays untouched"),
            ({"numeric_noise": -0.1}, "numeric_noise"),
            ({"swap_rate": 1.5}, "swap_rate"),
            ({"n": -1}, "non-negative"),
        ],
    )
    def test_load_adult_1m__rejects_bad_arguments(
        self, root: Path, kwargs: dict[str, object], match: str
    ) -> None:
        with pytest.raises(ValueError, match=match):
            load_adult_1m(root, **kwargs)  # type: ignore[arg-type]


class TestAdultDataset:
    def test___getitem__(self, root: Path) -> None:
        dataset = AdultDataset(root, split="test")
        assert len(dataset) == 3
        x, y = dataset[1]
        assert x.shape == (31,)
        assert x.dtype == torch.float32
        assert y == 1
        assert dataset.sensitive["race"].tolist() == ["Black", "White", "White"]
        assert dataset.feature_names == dataset.data.feature_names
        assert dataset.feature_slices["sex"] == slice(24, 26)
        assert dataset.raw["education"][1] == "HS-grad"
        assert torch.equal(dataset.features[1], x)
        assert dataset.targets.tolist() == [0, 1, 1]
        assert "AdultDataset(num_samples=3" in repr(dataset)

    def test___getitem____transforms(self, root: Path) -> None:
        dataset = AdultDataset(
            root,
            transform=lambda x: x * 0,
            target_transform=lambda y: y + 10,
        )
        x, y = dataset[0]
        assert float(x.abs().sum()) == 0.0
        assert y == 10

    def test_from_data__dataloader(self, root: Path) -> None:
        dataset = AdultDataset.from_data(load_adult_1m(root, n=64, seed=1))
        assert len(dataset) == 64
        x, y = next(iter(DataLoader(dataset, batch_size=16, shuffle=False)))
        assert x.shape == (16, 31)
        assert y.dtype == torch.int64
        assert dataset.data.resampled


@pytest.mark.data
class TestAdultRealData:
    def test_load_adult__real_files(self) -> None:
        root = _real_root()
        train = load_adult("train", root)
        test = load_adult("test", root)
        assert len(train) == 32561
        assert len(test) == 16281
        assert train.feature_names == test.feature_names
        assert train.features.shape == (32561, 108)
        assert abs(float(train.labels.float().mean()) - 0.2408) < 1e-3
        assert abs(float(test.labels.float().mean()) - 0.2362) < 1e-3
        assert torch.isfinite(test.features).all()
        assert set(train.sensitive["sex"].tolist()) == {"Female", "Male"}
        assert "workclass=missing" in train.feature_names
        assert "occupation=missing" in train.feature_names

    def test_load_adult_1m__real_files(self) -> None:
        big = load_adult_1m(_real_root(), n=100_000, seed=0)
        assert len(big) == 100_000
        assert abs(float(big.labels.float().mean()) - 0.24) < 0.01

    def test_load_adult_1m__real_files_fewer_duplicates_than_copies(self) -> None:
        root = _real_root()
        test_before = load_adult("test", root)
        big = load_adult_1m(root, n=20_000, seed=0, drop=("fnlwgt",))
        copies = load_adult_1m(
            root, n=20_000, seed=0, drop=("fnlwgt",), numeric_noise=0, swap_rate=0
        )
        assert big.num_duplicates is not None and copies.num_duplicates is not None
        assert big.num_duplicates < copies.num_duplicates
        assert int(big.source_indices.max()) < 32561
        test_after = load_adult("test", root)
        assert torch.equal(test_before.features, test_after.features)
        dropped = load_adult("test", root, drop=("fnlwgt",))
        assert big.feature_names == dropped.feature_names
