"""How a storage probe's answer reads in ``config check`` (:mod:`gridbridge.checks`): the
probe's own output judged once for every site kind, and a probe that could not be made (a
busy queue, no way to submit) said assumed rather than failed."""

from __future__ import annotations

from gridbridge.checks import NOT_PROBED, Finding, probe_answer, probe_findings

URL = "s3://bucket/root"


def test_a_probe_that_found_the_root_writable_answers_nothing() -> None:
    assert probe_answer(URL, f"starting\n{URL}: writable\n", 0) == ""
    assert probe_answer(URL, f"{URL}: writable\n", None) == ""  # Slurm keeps no exit status


def test_a_probe_that_failed_says_its_last_line_without_the_url_or_a_password() -> None:
    said = (f"{URL}: not writable: EndpointConnectionError: Could not connect to "
            "http://user:s3cr3t@10.0.0.1:9/x\n")
    why = probe_answer(URL, said, 1)
    assert why.startswith("not writable: EndpointConnectionError") and "s3cr3t" not in why
    assert probe_answer(URL, "", 137) == "the probe exited 137"
    assert probe_answer(URL, f"{URL}: writable\n", 1) == "the probe exited 1 after writing"


def test_findings_fail_a_failed_probe_and_pass_one_that_was_not_made() -> None:
    found = {"normal": "", "gpu": "not writable: denied",
             "scavenger": f"{NOT_PROBED}the probe job waited more than 60 s"}
    assert probe_findings("site c", URL, found, "partition") == [
        Finding("site c partition gpu", False, f"cannot reach {URL}: not writable: denied"),
        Finding("site c partition normal", True, f"its runtime reaches {URL}"),
        Finding("site c partition scavenger", True,
                f"assumed to reach {URL} (not probed: the probe job waited more than 60 s)"),
    ]
