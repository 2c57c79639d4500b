"""The edit schedule: when, which views, how strongly; one seeded draw sequence."""

import random

from scene_fakes import LoopConfig

from nerf_edit.scene.schedule import EditSchedule, resume_order


def test_edits_start_after_the_start_steps_counted_from_this_run():
    schedule = EditSchedule(LoopConfig(edit_start_step=3), num_views=4)
    assert [schedule.started(step) for step in (10, 11, 12, 13, 14)] == [False, False, False, True, True]


def test_updates_come_every_rate_times_batch_steps_from_the_first_edit_and_not_while_paused():
    schedule = EditSchedule(LoopConfig(edit_rate=2, edit_batch=3, edit_count=2), num_views=4)
    assert schedule.updates_due(0) == 0  # nothing before relevance is ready
    schedule.warm_up_from(2)  # targets at step 2, warm-up 3: the first edit at 5
    assert not schedule.begin_at(4)  # the warm-up decides, not the first call
    due = {step: schedule.updates_due(step) for step in range(20)}
    assert {step: n for step, n in due.items() if n} == {5: 2, 11: 2, 17: 2}
    assert schedule.updates_due(11, paused=True) == 0


def test_without_relevance_edits_begin_at_once():
    schedule = EditSchedule(LoopConfig(edit_rate=4), num_views=3)
    assert schedule.begin_at(7) and not schedule.begin_at(8)
    assert [step for step in range(7, 20) if schedule.updates_due(step)] == [7, 11, 15, 19]


def test_every_view_once_per_cycle_in_the_seeded_order_with_strengths_drawn_in_between():
    """The reference is Python's random.Random(seed) drawing in the order the loop asks: a shuffle at each new
    cycle, then a noise level per update."""
    config = LoopConfig(seed=7, lower_bound=0.3, upper_bound=0.6)
    schedule = EditSchedule(config, num_views=5)
    got = [(schedule.next_view(), schedule.strength()) for _ in range(10)]
    reference, order, expected = random.Random(7), [], []
    for _ in range(10):
        if not order:
            order = list(range(5))
            reference.shuffle(order)
        expected.append((order.pop(), reference.uniform(0.3, 0.6)))
    assert got == expected
    assert sorted(view for view, _ in got[:5]) == list(range(5)) and all(0.3 <= s <= 0.6 for _, s in got)


def test_a_resumed_run_edits_the_views_without_an_edit_first():
    schedule = EditSchedule(LoopConfig(), num_views=6)
    schedule.resume([0, 2, 5])
    first = [schedule.next_view() for _ in range(3)]
    assert sorted(first) == [1, 3, 4]
    assert sorted(schedule.next_view() for _ in range(3)) == [0, 2, 5]
    assert resume_order(4, [], random.Random(0))[-1] in range(4)


def test_a_sweep_edits_every_view_once_one_per_step_in_index_order_every_sweep_every_steps():
    """instruct-gs2gs (igs2gs_pipeline.py ~106-147): a sweep every `gs_steps`, one view per step in index order."""
    schedule = EditSchedule(LoopConfig(edit_schedule="sweep", sweep_every=10), num_views=4)
    schedule.begin_at(3)
    edited = {}
    for step in range(3, 30):
        for _ in range(schedule.updates_due(step)):
            edited[step] = schedule.next_views()
    assert edited == {3: [0], 4: [1], 5: [2], 6: [3], 13: [0], 14: [1], 15: [2], 16: [3], 23: [0], 24: [1], 25: [2],
                      26: [3]}
    paused = EditSchedule(LoopConfig(edit_schedule="sweep", sweep_every=10), num_views=2)
    paused.begin_at(0)
    assert paused.updates_due(0) == 1 and paused.next_views() == [0]
    assert paused.updates_due(1, paused=True) == 0 and paused.updates_due(2) == 1 and paused.next_views() == [1]
