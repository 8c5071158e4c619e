"""Every fault `make chaos` knows, by the name `--only` takes, in the order it runs them."""

from __future__ import annotations

from collections.abc import Callable

from chaos.harness import Context, Outcome
from chaos.scenarios.brokers import broker_loss
from chaos.scenarios.hostile import decode_bombs, hostile_clients
from chaos.scenarios.poison import poison
from chaos.scenarios.processes import kill_service, restart_infra, slow_classifier
from chaos.scenarios.state import flush_state

SCENARIOS: dict[str, Callable[[Context], Outcome]] = {
    "kill-feature_extractor-0": kill_service("feature_extractor-0"),
    "kill-classifier": kill_service("classifier"),
    "kill-provenance": kill_service("provenance"),
    "kill-preprocessor": kill_service("preprocessor"),
    "restart-kafka": restart_infra("kafka"),
    "restart-redis": restart_infra("redis"),
    "broker-loss": broker_loss,
    "slow-classifier": slow_classifier,
    "flush-state": flush_state,
    "poison": poison,
    "hostile-clients": hostile_clients,
    "decode-bombs": decode_bombs,
}


def default_scenarios(brokers: int) -> list[str]:
    """All of them, but `broker-loss` only on a cluster, where it replaces `restart-kafka`."""
    left_out = "restart-kafka" if brokers > 1 else "broker-loss"
    return [name for name in SCENARIOS if name != left_out]
