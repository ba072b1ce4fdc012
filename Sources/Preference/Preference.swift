/// Preferences, the Preference Control Model (PCM), rewards and the REBEL trainer.
public enum Preference {}
