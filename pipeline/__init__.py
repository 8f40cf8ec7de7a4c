"""The Kubeflow pipeline: the components of ``components/`` chained like dvc.yaml."""
