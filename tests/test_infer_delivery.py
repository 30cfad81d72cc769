"""Engine events reach an asyncio loop in order, with one loop wake-up per burst."""

from __future__ import annotations

import asyncio

from tuneforge.infer.delivery import LoopPost, deferred_wakeups, loop_post


def test_a_burst_of_events_wakes_the_loop_once_and_keeps_its_order() -> None:
    loop = asyncio.new_event_loop()
    try:
        wakes, original = [], loop.call_soon_threadsafe
        loop.call_soon_threadsafe = lambda *args: wakes.append(1) or original(*args)
        post, seen = LoopPost(loop), []
        for index in range(5):  # the emitter's events of one decode step, before the loop runs
            post.post(seen.append, index)
        assert len(wakes) == 1 and seen == []
        loop.run_until_complete(asyncio.sleep(0))
        assert seen == [0, 1, 2, 3, 4]
        post.post(seen.append, 5)  # a later burst wakes it again
        loop.run_until_complete(asyncio.sleep(0))
        assert len(wakes) == 2 and seen[-1] == 5
        assert loop_post(loop) is loop_post(loop)  # all requests on one loop share the wake-ups
    finally:
        loop.close()


def test_deferred_posts_wake_each_loop_once_at_the_end_of_the_block() -> None:
    loops = [asyncio.new_event_loop() for _ in range(2)]
    try:
        wakes: list[int] = []
        for index, loop in enumerate(loops):
            original = loop.call_soon_threadsafe
            loop.call_soon_threadsafe = lambda *args, i=index, o=original: wakes.append(i) or o(*args)
        posts, seen = [LoopPost(loop) for loop in loops], []
        with deferred_wakeups():  # what the emitter does with one decode step's events
            for index in range(6):
                posts[index % 2].post(seen.append, index)
            assert wakes == []
        assert sorted(wakes) == [0, 1]
        for loop in loops:
            loop.run_until_complete(asyncio.sleep(0))
        assert sorted(seen) == list(range(6)) and seen.index(0) < seen.index(2) < seen.index(4)
        loops[0].close()
        with deferred_wakeups():  # a closed loop is logged, the other loop still gets its events
            posts[0].post(seen.append, 6)
            posts[1].post(seen.append, 7)
        loops[1].run_until_complete(asyncio.sleep(0))
        assert seen[-1] == 7
    finally:
        for loop in loops:
            loop.close()


def test_quiet_posts_wait_for_the_next_waking_post_and_keep_their_order() -> None:
    loop = asyncio.new_event_loop()
    try:
        wakes, original = [], loop.call_soon_threadsafe
        loop.call_soon_threadsafe = lambda *args: wakes.append(1) or original(*args)
        post, seen = LoopPost(loop), []
        for index in range(4):  # a non-streamed request's text events
            post.post(seen.append, index, wake=False)
        loop.run_until_complete(asyncio.sleep(0))
        assert wakes == [] and seen == []
        post.post(seen.append, "finished")  # its last event wakes the loop once for all of them
        loop.run_until_complete(asyncio.sleep(0))
        assert wakes == [1] and seen == [0, 1, 2, 3, "finished"]
    finally:
        loop.close()
