"""The job lifecycle on SQLite and Postgres: guarded transitions, fan-in, cancel, the reaper."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from shared import jobs
from shared.db.engine import session_scope
from shared.db.models import State, utcnow
from shared.read_model import get_job, get_run
from shared.settings import get_settings
from shared.tasknames import INGEST_ASSEMBLE, INGEST_CONVERT, INGEST_PLAN


def new_run(children: int = 0) -> tuple[int, list[int]]:
    with session_scope() as session:
        run = jobs.create_run(session, "ingest", {"source": "x"})
        ids = [jobs.add_job(session, run.id, "plan", "plan", INGEST_PLAN).id]
        ids += [jobs.add_job(session, run.id, "convert", f"c{i}", INGEST_CONVERT).id for i in range(children)]
        return run.id, ids


def test_a_second_delivery_of_the_same_attempt_is_dropped(db: str) -> None:
    run_id, (job_id,) = new_run()
    assert jobs.claim(job_id, 1, "w1@h", None)
    assert not jobs.claim(job_id, 1, "w2@h", None)
    assert get_job(job_id)["worker"] == "w1@h"
    assert get_run(run_id)["state"] == "running"


def test_concurrent_claims_have_exactly_one_winner(db: str) -> None:
    for _ in range(10):
        _, (job_id,) = new_run()
        wins: list[bool] = []
        barrier = threading.Barrier(4)

        def contend(
            name: str, job: int = job_id, barrier: threading.Barrier = barrier, wins: list[bool] = wins
        ) -> None:
            barrier.wait()
            wins.append(jobs.claim(job, 1, name, None))

        threads = [threading.Thread(target=contend, args=(f"w{i}",)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(wins) == [False, False, False, True]


def test_success_finishes_the_run_only_when_every_job_succeeded(db: str) -> None:
    run_id, (plan, chunk) = new_run(children=1)
    for job_id in (plan, chunk):
        assert jobs.claim(job_id, 1, "w@h", None)
    assert jobs.succeed(plan, 1, {"images": 3})
    assert get_run(run_id)["state"] == "running"
    assert jobs.succeed(chunk, 1, run_metrics={"cases": 2}, run_artifacts={"dataset": "/d"})
    run = get_run(run_id)
    assert run["state"] == "succeeded"
    assert run["metrics"] == {"cases": 2} and run["artifacts"] == {"dataset": "/d"}
    assert not jobs.succeed(chunk, 1), "a finished job cannot finish twice"


def test_failure_fails_the_run_and_cancels_its_other_jobs(db: str) -> None:
    run_id, (plan, chunk) = new_run(children=1)
    assert jobs.claim(plan, 1, "w@h", None)
    assert jobs.fail(plan, 1, "COCO file x is not valid JSON")
    run = get_run(run_id)
    assert run["state"] == "failed"
    assert "COCO file x is not valid JSON" in run["error"] and f"job {plan}" in run["error"]
    assert get_job(chunk)["state"] == "cancelled"
    assert not jobs.claim(chunk, 1, "w@h", None)
    assert not jobs.fail(chunk, 1, "a later, secondary error"), "the first error is the one users read"


def test_waiting_job_is_released_once_after_all_others_succeeded(db: str) -> None:
    run_id, (plan, c1, c2) = new_run(children=2)
    with session_scope() as session:
        waiting = jobs.add_job(session, run_id, "assemble", "a", INGEST_ASSEMBLE, state=State.WAITING, stage=1).id
    for job_id in (plan, c1, c2):
        jobs.claim(job_id, 1, "w@h", None)
    jobs.succeed(plan, 1)
    jobs.succeed(c1, 1)
    assert jobs.release_waiting(run_id) == []
    jobs.succeed(c2, 1)
    released = jobs.release_waiting(run_id)
    assert [ref.job_id for ref in released] == [waiting]
    assert jobs.release_waiting(run_id) == [], "a second caller must not release it again"
    assert get_run(run_id)["state"] == "running"


def test_stages_are_released_in_order_and_a_cancelled_job_does_not_block_them(db: str) -> None:
    run_id, (first, second) = new_run(children=1)
    with session_scope() as session:
        middle = jobs.add_job(session, run_id, "evaluate", "m", INGEST_ASSEMBLE, state=State.WAITING, stage=1).id
        last = jobs.add_job(session, run_id, "report", "l", INGEST_ASSEMBLE, state=State.WAITING, stage=2).id
    jobs.claim(first, 1, "w@h", None)
    jobs.succeed(first, 1)
    assert jobs.cancel(job_id=second).jobs == 1
    assert get_run(run_id)["state"] == "running", "one cancelled job does not end the run"
    assert [ref.job_id for ref in jobs.release_waiting(run_id)] == [middle]
    jobs.claim(middle, 1, "w@h", None)
    jobs.succeed(middle, 1)
    assert [ref.job_id for ref in jobs.release_waiting(run_id)] == [last]
    jobs.claim(last, 1, "w@h", None)
    jobs.succeed(last, 1)
    assert get_run(run_id)["state"] == "succeeded"


def test_retry_requeues_a_failed_job_and_reopens_its_run(db: str) -> None:
    run_id, (fold,) = new_run()
    with session_scope() as session:
        evaluate = jobs.add_job(session, run_id, "evaluate", "e", INGEST_ASSEMBLE, state=State.WAITING, stage=1).id
    jobs.claim(fold, 1, "w@h", None)
    jobs.fail(fold, 1, "CUDA out of memory")
    assert get_job(evaluate)["state"] == "cancelled"
    first_task_id = get_job(fold)["celery_task_id"]
    again = jobs.retry(fold)
    assert again.attempt == 2
    assert again.task_id == get_job(fold)["celery_task_id"] != first_task_id, "each attempt its own message id"
    assert get_run(run_id)["state"] == "running" and get_job(evaluate)["state"] == "waiting"
    with pytest.raises(ValueError, match="only a failed or cancelled job"):
        jobs.retry(fold)


def test_cancel_stops_beats_and_drops_late_results(db: str) -> None:
    run_id, (plan, chunk) = new_run(children=1)
    jobs.claim(plan, 1, "w@h", None)
    task_ids = sorted(get_job(job)["celery_task_id"] for job in (plan, chunk))
    assert all(task_ids), "a job's task id is written with the job, before its message is sent"
    cancelled = jobs.cancel(run_id=run_id)
    assert (cancelled.jobs, sorted(cancelled.task_ids)) == (2, task_ids)
    assert not jobs.beat(plan, 1)
    assert not jobs.progress(plan, 1, 1, 2)
    assert not jobs.succeed(plan, 1)
    assert get_run(run_id)["state"] == "cancelled"
    assert get_job(chunk)["state"] == "cancelled"


def test_reaper_requeues_a_lost_job_as_the_next_attempt(db: str) -> None:
    run_id, (plan,) = new_run()
    jobs.claim(plan, 1, "dead@h", "0")
    assert jobs.reap() == [], "a fresh heartbeat is within the lease"
    later = utcnow() + timedelta(minutes=10)
    lost_task_id = get_job(plan)["celery_task_id"]
    (requeued,) = jobs.reap(now=later)
    assert (requeued.job_id, requeued.attempt) == (plan, 2)
    job = get_job(plan)
    assert requeued.task_id == job["celery_task_id"] != lost_task_id
    assert job["state"] == "queued" and job["attempt"] == 2 and job["worker"] is None
    assert not jobs.beat(plan, 1), "the lost attempt's worker, if it wakes up, is told to stop"
    assert not jobs.claim(plan, 1, "dead@h", None), "a redelivered message of attempt 1 is dropped"
    assert jobs.claim(plan, 2, "alive@h", None)
    assert jobs.succeed(plan, 2)
    assert get_run(run_id)["state"] == "succeeded"


def test_reaper_fails_a_job_that_used_up_its_attempts(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_ATTEMPTS", "2")
    get_settings.cache_clear()
    run_id, (plan,) = new_run()
    jobs.claim(plan, 1, "w@h", None)
    (requeued,) = jobs.reap(now=utcnow() + timedelta(minutes=10))
    jobs.claim(plan, requeued.attempt, "w@h", None)
    assert jobs.reap(now=utcnow() + timedelta(minutes=20)) == []
    run = get_run(run_id)
    assert run["state"] == "failed"
    assert "lost its worker (w@h) on each of 2 attempts" in run["error"]


def test_a_job_handed_back_by_a_stopping_worker_costs_no_attempt(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_ATTEMPTS", "2")
    get_settings.cache_clear()
    run_id, (plan,) = new_run()
    jobs.claim(plan, 1, "stopping@h", None)
    handed = jobs.hand_back(plan, 1, "handed back by stopping@h")
    assert handed is not None and handed.attempt == 2
    assert jobs.hand_back(plan, 1, "twice") is None, "only the running attempt can be handed back"
    job = get_job(plan)
    assert (job["state"], job["attempt"], job["worker"]) == ("queued", 2, None)
    assert not jobs.beat(plan, 1)
    # Lost once after the hand-back: one attempt of MAX_ATTEMPTS=2 is used, so it is re-queued, not failed.
    jobs.claim(plan, 2, "w@h", None)
    (requeued,) = jobs.reap(now=utcnow() + timedelta(minutes=10))
    assert requeued.attempt == 3 and get_run(run_id)["state"] == "running"
    earlier = get_job(plan)["earlier_attempts"]  # for the run's timeline
    assert [(a["attempt"], a["worker"], a["end"]) for a in earlier] == [
        (1, "stopping@h", "handed back"),
        (2, "w@h", "lost"),
    ]
    assert all(attempt["started_at"] <= attempt["ended_at"] for attempt in earlier)


def test_jobs_queued_past_the_grace_are_candidates_for_a_lost_message(db: str) -> None:
    _, (plan, chunk) = new_run(children=1)
    assert jobs.queued_since(utcnow() - timedelta(seconds=60)) == []
    stale = {job.job_id for job in jobs.queued_since(utcnow() + timedelta(seconds=1))}
    assert stale == {plan, chunk}
    jobs.claim(plan, 1, "w@h", None)
    assert [job.job_id for job in jobs.queued_since(utcnow() + timedelta(seconds=1))] == [chunk]


def test_waiting_jobs_whose_release_was_lost_are_found_and_released_once(db: str) -> None:
    run_id, (plan,) = new_run()
    with session_scope() as session:
        assemble = jobs.add_job(session, run_id, "assemble", "a", INGEST_ASSEMBLE, state=State.WAITING, stage=1).id
    jobs.claim(plan, 1, "w@h", None)
    jobs.succeed(plan, 1)  # the worker died before it released the next stage
    assert jobs.runs_with_waiting_jobs() == [run_id]
    (released,) = jobs.release_waiting(run_id)
    assert released.job_id == assemble and jobs.release_waiting(run_id) == []
    assert jobs.runs_with_waiting_jobs() == []
    assert get_job(assemble)["state"] == "queued"


def new_sweep(trials: int) -> tuple[int, list[int], int]:
    """A sweep's shape: trials side by side, then its end waiting for them."""
    from shared.tasknames import SWEEP_FINISH, SWEEP_TRIAL

    with session_scope() as session:
        run = jobs.create_run(session, "sweep", {})
        ids = [
            jobs.add_job(session, run.id, "trial", f"trial {n}", SWEEP_TRIAL, {"trial": n}).id for n in range(trials)
        ]
        end = jobs.add_job(session, run.id, "sweep-end", "end", SWEEP_FINISH, state=State.WAITING, stage=1).id
        return run.id, ids, end


def test_a_failed_trial_costs_its_sweep_nothing_but_itself(db: str) -> None:
    run_id, (first, second), end = new_sweep(2)
    for job_id in (first, second):
        assert jobs.claim(job_id, 1, "w@h", None)
    assert jobs.fail(first, 1, "out of memory")
    assert get_run(run_id)["state"] == "running" and get_job(second)["state"] == "running"
    assert jobs.release_waiting(run_id) == [], "the end waits for the trial still running"
    assert jobs.succeed(second, 1)
    (released,) = jobs.release_waiting(run_id)
    assert released.job_id == end
    assert jobs.claim(end, 1, "w@h", None) and jobs.succeed(end, 1)
    assert get_run(run_id)["state"] == "succeeded"


def test_a_pruned_trial_ends_as_its_own_state_with_its_curve(db: str) -> None:
    run_id, (pruned, kept), end = new_sweep(2)
    for job_id in (pruned, kept):
        assert jobs.claim(job_id, 1, "w@h", None)
    curve = {"history": [{"epoch": 1, "val_auc": 0.4}], "epochs_run": 1}
    assert jobs.prune(pruned, 1, curve, "trial 0 pruned after epoch 1")
    job = get_job(pruned)
    assert job["state"] == "pruned" and job["metrics"] == curve and job["finished_at"]
    assert not jobs.prune(pruned, 1, {}, "again"), "an ended job is not pruned twice"
    assert jobs.succeed(kept, 1)
    assert [ref.job_id for ref in jobs.release_waiting(run_id)] == [end]


def test_retrying_a_trial_of_an_ended_sweep_runs_its_end_again_under_a_new_task_id(db: str) -> None:
    run_id, (failed, kept), end = new_sweep(2)
    for job_id in (failed, kept):
        assert jobs.claim(job_id, 1, "w@h", None)
    assert jobs.fail(failed, 1, "bad weights file")
    assert jobs.succeed(kept, 1)
    jobs.release_waiting(run_id)
    old_task = get_job(end)["celery_task_id"]
    assert jobs.claim(end, 1, "w@h", None) and jobs.succeed(end, 1)
    assert get_run(run_id)["state"] == "succeeded"

    again = jobs.retry(failed)
    assert again.attempt == 2
    assert get_run(run_id)["state"] == "running"
    assert get_job(end)["state"] == "waiting" and get_job(end)["celery_task_id"] != old_task
    assert jobs.claim(failed, 2, "w@h", None) and jobs.succeed(failed, 2)
    (released,) = jobs.release_waiting(run_id)
    assert released.job_id == end
