/// The expert worker of a Mixture of Preference Experts cluster: one model with its own system prompt, serving
/// top-k next-token distributions to the coordinator. `ExpertSessions` is the pure session state machine; the
/// ZeroMQ shell tokenizes requests, runs the model and carries out its directives.
public enum Expert {}
