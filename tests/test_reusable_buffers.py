"""The pool that lends large I/O buffers (app/reusable_buffers.py)."""

import threading
import time

from app.reusable_buffers import BufferPool


def test_a_buffer_given_back_is_lent_again_not_made_anew():
    pool = BufferPool(1024, keep=2)
    with pool.lend() as first:
        first[:3] = b"abc"
    with pool.lend() as again:
        assert again.obj is first.obj
        assert bytes(again[:3]) == b"abc"


def test_a_wiped_buffer_comes_back_zeroed():
    pool = BufferPool(1024, keep=2)
    with pool.lend(wipe=True) as buffer:
        buffer[:] = b"p" * 1024  # plaintext
    with pool.lend() as again:
        assert again.obj is buffer.obj
        assert bytes(again) == bytes(1024)


def test_it_is_wiped_when_the_borrower_fails_too():
    pool = BufferPool(64, keep=1)
    try:
        with pool.lend(wipe=True) as buffer:
            buffer[:] = b"p" * 64
            raise RuntimeError("the client went away")
    except RuntimeError:
        pass
    with pool.lend() as again:
        assert bytes(again) == bytes(64)


def test_buffers_lent_at_once_are_distinct_and_at_most_keep_are_kept():
    pool = BufferPool(16, keep=2)
    with pool.lend() as a, pool.lend() as b, pool.lend() as c:
        first = [a.obj, b.obj, c.obj]  # held, so that no new buffer can take an old one's place
    assert len({id(buffer) for buffer in first}) == 3
    with pool.lend() as x, pool.lend() as y, pool.lend() as z:
        again = [x.obj, y.obj, z.obj]
    from_pool = [buffer for buffer in again if any(buffer is old for old in first)]
    assert len(from_pool) == 2  # the third was made: only two were kept


def test_threads_never_share_a_buffer():
    pool = BufferPool(8, keep=4)
    clashes: list[bytes] = []

    def borrow(mark: bytes) -> None:
        for _ in range(300):
            with pool.lend() as buffer:
                buffer[:] = mark * 8
                time.sleep(0)  # another thread's turn, while this one holds the buffer
                if bytes(buffer) != mark * 8:
                    clashes.append(bytes(buffer))

    threads = [threading.Thread(target=borrow, args=(bytes([65 + n]),)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert clashes == []
