"""Capturing what the project's loggers log, whatever Detectron2's setup_logger did to them."""
import contextlib
import logging
from typing import Iterator, List


@contextlib.contextmanager
def captured_logs(*logger_names: str, level: int = logging.INFO) -> Iterator[List[logging.LogRecord]]:
    """The records that the named loggers log at ``level`` or above, collected in a list.

    The handler is attached to the loggers themselves, not to the root logger where pytest's
    ``caplog`` listens: Detectron2's ``setup_logger`` (run by train_net.py and the tools, which
    some tests call in-process) stops propagation to the root.
    """
    records: List[logging.LogRecord] = []
    handler = logging.Handler(level)
    handler.emit = records.append
    loggers = [logging.getLogger(name) for name in logger_names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(min(level, logger.getEffectiveLevel()))
    try:
        yield records
    finally:
        for logger, old_level in zip(loggers, levels):
            logger.removeHandler(handler)
            logger.setLevel(old_level)
