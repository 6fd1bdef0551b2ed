"""Device applications (the live camera+microphone app); they use `edgemm.runtimes` only, never torch."""
