"""Start Artifact Vault: ``python main.py --config config.yml`` (see ``--help``)."""

from artifact_vault.cli import main

if __name__ == "__main__":
    main()
