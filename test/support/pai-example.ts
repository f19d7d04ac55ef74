// The example request of PAI's CreateImageBuild document (/work/shared/seeds, "Builds a custom image
// based on the specified configuration"), every field with the value of the document's Example
// column. The document's table is flat; the nesting is that of Alibaba Cloud's AIWorkspace SDK
// models (UserVpc and OverwriteImageTag at the top level, RegistryAuths in BuildConfig), and Kiln
// also takes the places the table's order suggests (UserVpc in Resource, OverwriteImageTag in
// TargetRegistry). OverwriteImageTag has no example value in the document, so it is left out.
// ClientToken is a query parameter in the document (it is listed outside the body).

export const PAI_EXAMPLE_CLIENT_TOKEN = '123e4567-e89b-12d3-a456-426655440000';

export const PAI_EXAMPLE_REGISTRY = 'user-test-registry-vpc.cn-wulanchabu.cr.aliyuncs.com';

export const paiDocumentExample = () => ({
  Accessibility: 'PUBLIC',
  WorkspaceId: '12345',
  Resource: {
    EcsSpec: 'ecs.c6.large',
    ResourceConfig: { CPU: '4', Memory: '8Gi' },
    ResourceId: 'quotaadzoqup693z',
    ResourceType: 'Lingjun',
  },
  UserVpc: {
    VpcId: 'vpc-abcdef**',
    SwitchId: 'vs-abcdef**',
    SecurityGroupId: 'sg-abcdef**',
    ExtendedCidrs: ['10.0.0.0/24'],
    DefaultRoute: 'eth1',
  },
  TargetRegistry: { InstanceId: 'cri-**abcd', Type: 'AcrEnterprise' },
  BuildConfig: {
    Dockerfile: 'FROM ubuntu:18:04 RUN pip3 install numpy==1.19.5',
    BuildType: 'PackageInstallation',
    RegistryAuths: { [PAI_EXAMPLE_REGISTRY]: { Auth: 'dXNlcjp0ZXN0' } },
  },
  RegionId: 'cn-wulanchabu',
  ImageBuildJobName: 'build-my-image',
  Image: {
    Name: 'test-v1',
    Description: '构建测试镜像',
    Uri: `${PAI_EXAMPLE_REGISTRY}/pai-test/pai-test:test-v1`,
    Labels: [{ Key: 'key1', Value: 'value1' }],
  },
});
