/// The coordinator: membership, sessions, merging of expert distributions, sampling and failover.
public enum Coordinator {}
