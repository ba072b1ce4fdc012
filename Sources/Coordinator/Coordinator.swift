/// The coordinator of a Mixture of Preference Experts cluster ("Orchestrating LLMs with Different
/// Personalizations", Zhou et al., arXiv 2407.04181): membership of the expert workers, one session per
/// generation request, the merge of the experts' next-token distributions with the preference controller's
/// weights, sampling, stop conditions and failover.
///
/// Everything here except the shell is pure: `Membership`, `CoordinatorSession`, `Merger`, `TokenSampler`,
/// `StopMatcher` and `ClusterConfig` are `Sendable` values driven by `on…` events that take the time as a value
/// and return directives for the shell to carry out.
public enum Coordinator {}
