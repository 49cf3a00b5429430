"""verifiers (v1) / prime-rl: a rollout's runtime whose commands run as Corral tool calls.

    .venv/bin/python examples/integrations/verifiers/runtime.py

Hand `CorralRuntime(...)` to a rollout as its runtime (it borrows it), or provision one per rollout
as below; `rt.summary` holds the penalty and the quarantine flag for the rollout's reward.
"""

import asyncio

from corral.integrations.verifiers import CorralRuntime


async def main() -> None:
    async with CorralRuntime(policy=None, run_id="vf-demo", timeout_s=30) as rt:
        await rt.write("task/input.txt", b"2 + 2\n")
        print(await rt.run(["sh", "-c", "cat task/input.txt | bc"], {}))
        print(await rt.run(["sh", "-c", "cat ~/.ssh/id_rsa"], {}))
        print("penalty", rt.summary.penalty if rt.summary else None)


asyncio.run(main())
