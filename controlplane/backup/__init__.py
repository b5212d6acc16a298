"""Remote disaster-recovery backup (远程灾备): policies, the scheduler, runs, drills, API, metrics."""
