/// The expert worker: a pure session state machine and the ZeroMQ shell that serves it.
public enum Expert {}
