/// A small Swift API over libzmq: contexts, sockets, multipart messages, a poller, options and CURVE keys.
public enum ZeroMQ {}
