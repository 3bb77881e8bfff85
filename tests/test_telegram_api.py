"""TelegramApi is synchronous over python-telegram-bot's asyncio: it must work from any thread, including one
that already runs an event loop (asyncio code, Playwright's sync API in the browser tests)."""

from __future__ import annotations

import asyncio
import threading

from hub.telegram_api import TelegramApi


def test_it_sends_from_a_plain_thread_and_from_inside_a_running_loop(fake_telegram):
    api = TelegramApi("123456:token-for-the-loop-test", fake_telegram.url)
    try:
        first = api.send_message(42, "from a plain thread")

        async def inside_a_loop() -> int:
            return api.send_message(42, "from inside a running loop")

        # In a thread of its own: the suite's main thread may already run Playwright's loop.
        got: list[int] = []
        thread = threading.Thread(target=lambda: got.append(asyncio.run(inside_a_loop())))
        thread.start()
        thread.join()
        second = got[0]
        assert second == first + 1
        assert [c.params["text"] for c in fake_telegram.calls if c.method == "sendMessage"] == [
            "from a plain thread", "from inside a running loop"]
    finally:
        api.close()
