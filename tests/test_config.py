import pytest

from medgan import MedganError
from medgan.config import TrainConfig, from_dict, load_toml, to_toml


def test_defaults_are_the_seed_settings():
    cfg = TrainConfig()
    assert (cfg.lr, cfg.beta1, cfg.beta2, cfg.batch_size, cfg.epochs, cfg.latent_dim) == (2e-4, 0.5, 0.999, 64, 50, 100)


def test_unknown_key_is_rejected_with_a_suggestion():
    with pytest.raises(MedganError, match=r"unknown config key\(s\) 'epochz' \(did you mean 'epochs'\?\)"):
        from_dict({"epochz": 3})
    with pytest.raises(MedganError, match="Valid keys: dataset"):
        from_dict({"learning_rate": 1e-3})


@pytest.mark.parametrize(
    "values, message",
    [
        ({"loss": "wgangp"}, "loss must be one of gan, hinge, lsgan, wgan, wgan-gp"),
        ({"model": "resnet9"}, "model must be one of dcgan, mlp"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"epochs": "3"}, "must be an integer"),
        ({"lr": -1.0}, "lr must be > 0"),
        ({"channels": 2}, "channels must be 1 or 3"),
        ({"device": "gpu"}, "device must be auto, cpu"),
        ({"batch_size": True}, "must be an integer"),
        ({"spectral_norm": 1}, "must be true or false"),
        ({"augment": "translation,mixup"}, "augment: unknown augmentation"),
        ({"ema": 1.0}, r"ema must be in \[0, 1\)"),
        ({"augment": "translation", "augment_target": 1.5}, r"augment_target must be in \[0, 1\)"),
        ({"augment_target": 0.6}, "set augment too"),
        ({"augment": "translation", "augment_target": 0.6, "loss": "wgan-gp"}, "wgan-gp is a critic"),
        ({"minibatch_std": True}, "minibatch_std is an option of the dcgan and resnet"),
        ({"r1": -1.0}, "r1 must be >= 0"),
        ({"lr_d": -1.0}, "lr_d >= 0"),
        ({"precision": "fp16"}, "precision must be one of fp32, bf16, auto"),
        ({"max_minutes": -1.0}, "max_minutes must be >= 0"),
        ({"keep_best": "fid"}, "keep_best must be one of c2st"),
        ({"keep_best": "c2st", "eval_every": 0}, "set eval_every >= 1"),
    ],
)
def test_bad_values_name_the_choices(values, message):
    with pytest.raises(MedganError, match=message):
        from_dict(values)


def test_toml_round_trip_and_table(tmp_path):
    cfg = from_dict({"loss": "wgan", "epochs": 7, "lr": 1e-4})
    path = tmp_path / "c.toml"
    path.write_text(to_toml(cfg))
    assert load_toml(path) == cfg
    path.write_text('[train]\nloss = "hinge"\nepochs = 2\n')
    assert load_toml(path).loss == "hinge"


def test_bad_toml_files(tmp_path):
    with pytest.raises(MedganError, match="not found"):
        load_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = = 3")
    with pytest.raises(MedganError, match="not valid TOML"):
        load_toml(bad)
    bad.write_text("epocs = 3")
    with pytest.raises(MedganError, match="bad.toml: unknown config key"):
        load_toml(bad)
