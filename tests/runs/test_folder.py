

def test_train_and_cluster_help_list_the_files_the_run_folder_describes():
    from autoencoder3d.cli.commands import cluster, train
    from autoencoder3d.runs.folder import ENCODINGS, MEMBERS, RECORD, written_files

    assert "model/model-encoder.keras" in written_files(True) and "model/" not in written_files(False)
    for listing in (written_files(True), written_files(False)):
        assert all(name in listing for name in (ENCODINGS, MEMBERS, RECORD))
    assert written_files(True) in train.__doc__ and written_files(False) in cluster.__doc__
