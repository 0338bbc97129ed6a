"""gpu-queue workers as SLURM jobs (docs/deployment.md, "On a SLURM cluster"): submitted, listed and
cancelled through SLURM's own commands (sbatch.py); each job runs one worker and hands its work back before
its time limit (worker.py)."""
