"""The paper's model: the one-layer transformer of Yang, Kailkhura, Wang and Liang (NeurIPS 2024)
learning word co-occurrence, its data, initializations, engines (state representations of its
flow), observables, phase markers, gradient descent and the registry of the paper's claims."""
