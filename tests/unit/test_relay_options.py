"""``fusevault relay``'s limits are whole numbers within bounds: any other is a usage error (exit 2)
before the relay starts (attack round 53d: ``--join-names 0`` let nobody in, a huge one let a scan
of the session names run unbounded)."""

from __future__ import annotations

import pytest

from fusevault.cli.app import build_parser


@pytest.mark.parametrize("option", ["--join-names", "--join-attempts", "--calls-per-second", "--max-queue",
                                    "--session-ttl"])
@pytest.mark.parametrize("value", ["0", "-1", "10000000", "1e3", "\u0661\u0666", " 16", "x"])
def test_a_relay_limit_out_of_bounds_is_a_usage_error(option: str, value: str, capsys) -> None:
    with pytest.raises(SystemExit) as ended:
        build_parser().parse_args(["relay", option, value])
    assert ended.value.code == 2
    assert "a whole number from" in capsys.readouterr().err


def test_the_relay_limits_within_bounds_are_taken() -> None:
    """Control: the defaults and the values the service tests run with."""
    args = build_parser().parse_args(["relay", "--join-names", "16", "--join-attempts", "3",
                                      "--session-ttl", "2", "--calls-per-second", "5", "--max-queue", "2"])
    assert (args.join_names, args.join_attempts, args.session_ttl, args.calls_per_second,
            args.max_queue) == (16, 3, 2, 5, 2)
    defaults = build_parser().parse_args(["relay"])
    assert (defaults.join_names, defaults.max_queue) == (16, 8)
