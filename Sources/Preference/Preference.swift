/// Preferences and the Preference Control Model (PCM) of Mixture of Preference Experts
/// ("Orchestrating LLMs with Different Personalizations", Zhou et al., arXiv 2407.04181).
///
/// A user states a preference over the six dimensions of Personalized Soups (`PreferenceSpec`); a
/// `PreferenceController` turns it, at every token, into weights α over the experts that the coordinator
/// uses to merge their next-token distributions.
public enum Preference {}
