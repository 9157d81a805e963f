"""What the command-line entry points share: reading the config, launching the processes."""
import contextlib
import os
from typing import Callable, Sequence

from detectron2.config import CfgNode
from detectron2.engine import launch

from soft_teacher.config import get_cfg, merge_config
from soft_teacher.data import register_custom_datasets


class ConfigError(ValueError):
    """The config file or the command-line options are invalid; the message says which key and why."""


def load_config(config_file: str, opts: Sequence[str] = ()) -> CfgNode:
    """``soft_teacher.config.get_cfg()`` merged with a yaml file and ``KEY VALUE`` options.

    It also registers the config's custom datasets (``DATASETS.CUSTOM_COCO``,
    ``DATASETS.CUSTOM_UNLABELED_FOLDERS``): every entry point reads its config here, so this is
    where a process gets them. The training loaders register them too; code that builds a config
    otherwise, or a process that receives one, and uses the sets outside training (e.g.
    ``SoftTeacherTrainer.test``) calls ``soft_teacher.data.register_custom_datasets`` itself.

    Raises:
        ConfigError: a one-line message for an unknown key (naming it and the closest existing
            keys), a value of the wrong type, a missing file, an odd-length option list, or a
            malformed or clashing custom dataset entry.
    """
    cfg = get_cfg()
    try:
        merge_config(cfg, config_file, opts)
        register_custom_datasets(cfg)
    except (KeyError, AssertionError, ValueError) as err:
        message = err.args[0] if err.args else repr(err)
        raise ConfigError(str(message)) from None
    return cfg


@contextlib.contextmanager
def _gpus_hidden_from_children():
    previous = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    try:
        yield
    finally:
        if previous is None:
            del os.environ["CUDA_VISIBLE_DEVICES"]
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = previous


def launch_on_device(
    main_func: Callable,
    device: str,
    num_processes_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str = "auto",
    args: tuple = (),
) -> None:
    """Detectron2's ``launch``, with processes that train on the CPU when ``device`` is "cpu".

    Detectron2 joins processes with NCCL (and one GPU each) whenever the machine has a GPU.
    For ``MODEL.DEVICE cpu`` with several processes, the spawned processes are started with
    no visible GPU, so they join with the gloo backend; this process's environment is restored
    afterwards. Each machine of a multi-machine run calls this with its ``machine_rank`` and
    the same ``dist_url`` (``tcp://HOST:PORT`` of machine 0).
    """
    hide_gpus = device == "cpu" and num_processes_per_machine * num_machines > 1
    with _gpus_hidden_from_children() if hide_gpus else contextlib.nullcontext():
        launch(
            main_func,
            num_processes_per_machine,
            num_machines=num_machines,
            machine_rank=machine_rank,
            dist_url=dist_url,
            args=args,
        )
