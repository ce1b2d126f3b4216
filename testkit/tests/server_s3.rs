//! Smoke test: the S3-compatible store started by `scripts/test-servers`,
//! through aws-sdk-s3 configured the way checkpoints will use it (static
//! credentials, custom endpoint, path-style addressing).

use aws_sdk_s3::{
    config::{BehaviorVersion, Credentials, Region},
    primitives::ByteStream,
    types::{CompletedMultipartUpload, CompletedPart},
    Client,
};

fn client() -> Client {
    let server = eddy_testkit::s3();
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(server.endpoint)
        .credentials_provider(Credentials::new(
            server.access_key,
            server.secret_key,
            None,
            None,
            "eddy-test",
        ))
        .force_path_style(true)
        .build();
    Client::from_conf(config)
}

#[tokio::test]
async fn put_get_list_with_prefix_and_multipart() {
    let s3 = client();
    let bucket = eddy_testkit::unique_name("smoke");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();

    // put and get
    for key in [
        "job/p0/manifest-1.json",
        "job/p0/sst-1",
        "job/p1/sst-1",
        "other/x",
    ] {
        s3.put_object()
            .bucket(&bucket)
            .key(key)
            .body(ByteStream::from(format!("contents of {key}").into_bytes()))
            .send()
            .await
            .unwrap();
    }
    let got = s3
        .get_object()
        .bucket(&bucket)
        .key("job/p0/sst-1")
        .send()
        .await
        .unwrap();
    let body = got.body.collect().await.unwrap().into_bytes();
    assert_eq!(&body[..], b"contents of job/p0/sst-1");

    // list with a prefix
    let listed = s3
        .list_objects_v2()
        .bucket(&bucket)
        .prefix("job/p0/")
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, vec!["job/p0/manifest-1.json", "job/p0/sst-1"]);

    // multipart: two 5 MiB parts and a short last one
    let key = "job/p0/big-sst";
    let parts: Vec<Vec<u8>> = (0..3u8)
        .map(|i| {
            let len = if i < 2 { 5 << 20 } else { 123_457 };
            (0..len)
                .map(|j| (j as u8).wrapping_mul(31).wrapping_add(i))
                .collect()
        })
        .collect();
    let upload = s3
        .create_multipart_upload()
        .bucket(&bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let upload_id = upload.upload_id().unwrap();
    let mut completed = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let number = i as i32 + 1;
        let out = s3
            .upload_part()
            .bucket(&bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(part.clone()))
            .send()
            .await
            .unwrap();
        completed.push(
            CompletedPart::builder()
                .part_number(number)
                .e_tag(out.e_tag().unwrap())
                .build(),
        );
    }
    s3.complete_multipart_upload()
        .bucket(&bucket)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(completed))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let whole = s3
        .get_object()
        .bucket(&bucket)
        .key(key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(whole.len(), (10 << 20) + 123_457);
    assert_eq!(&whole[..], &parts.concat()[..]);

    // clean up
    let all = s3.list_objects_v2().bucket(&bucket).send().await.unwrap();
    for object in all.contents() {
        s3.delete_object()
            .bucket(&bucket)
            .key(object.key().unwrap())
            .send()
            .await
            .unwrap();
    }
    s3.delete_bucket().bucket(&bucket).send().await.unwrap();
}
