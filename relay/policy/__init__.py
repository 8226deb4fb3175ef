"""The policy gate's rules (issue 17, first part): load and validate a policy, decide an action.

    policy = load_policy(Path("policy.yaml"))     # PolicyError lists every problem
    verdict = evaluate(policy, facts)              # first matching rule, else the default

Pure logic, no I/O: the coordinator's gate, approvals and evidence build on it.
"""

from relay.policy.bucket import Slot, reserve
from relay.policy.evaluate import evaluate
from relay.policy.load import build_policy, load_policy
from relay.policy.model import Decision, EffectClass, Policy, Rule, Throttle, Verdict

__all__ = ["Decision", "EffectClass", "Policy", "Rule", "Slot", "Throttle", "Verdict", "build_policy", "evaluate",
           "load_policy", "reserve"]
